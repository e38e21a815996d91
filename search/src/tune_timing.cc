#include "parallax/search/tune_timing.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace parallax::search {

double WorkerTiming::other_s() const {
  return std::max(0.0, wall_s - measure_s - compile_wait_s - prepare_s - start_s - db_s);
}

nlohmann::json ToJson(const WorkerTiming& w) {
  return {{"device", w.device},
          {"units", w.units},
          {"measurements", w.measurements},
          {"worker_starts", w.starts},
          {"wall_s", w.wall_s},
          {"measure_s", w.measure_s},
          {"compile_wait_s", w.compile_wait_s},
          {"prepare_s", w.prepare_s},
          {"start_s", w.start_s},
          {"db_s", w.db_s},
          {"other_s", w.other_s()},
          {"idle_end_s", w.idle_end_s}};
}

nlohmann::json ToJson(const TuneTiming& t) {
  nlohmann::json workers = nlohmann::json::array();
  for (const WorkerTiming& w : t.workers) workers.push_back(ToJson(w));
  const CompileQueue::Stats& c = t.compile;
  return {{"wall_s", t.wall_s},
          {"setup_s", t.setup_s},
          {"order", t.order},
          {"workers", workers},
          {"compile",
           {{"threads", c.threads},
            {"classes", c.classes},
            {"runs", c.done},
            {"cached", c.cached},
            {"inline", c.inline_runs},
            {"cpu_s", c.cpu_s},
            {"busy_s", c.busy_s},
            {"wall_s", c.wall_s}}},
          {"db_s", t.db_s}};
}

std::string Summary(const TuneTiming& t) {
  std::string s = absl::StrFormat("timing: wall %.1f s (set-up %.1f s, units %s)", t.wall_s, t.setup_s, t.order);
  for (const WorkerTiming& w : t.workers)
    absl::StrAppendFormat(&s,
                          "; gpu%d measure %.1f s, compile wait %.1f s, prepare %.1f s, start %.1f s (%d), db %.1f s, "
                          "other %.1f s, idle at end %.1f s",
                          w.device, w.measure_s, w.compile_wait_s, w.prepare_s, w.start_s, w.starts, w.db_s,
                          w.other_s(), w.idle_end_s);
  const CompileQueue::Stats& c = t.compile;
  absl::StrAppendFormat(&s, "; compile %.1f CPU-s in %.1f s on %d thread(s), %d of %d class(es) compiled (%d inline)",
                        c.cpu_s, c.wall_s, c.threads, c.done - c.cached, c.classes, c.inline_runs);
  absl::StrAppendFormat(&s, "; db %.2f s", t.db_s);
  return s;
}

}  // namespace parallax::search
