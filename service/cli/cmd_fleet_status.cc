// `parallax fleet status`: each shard's buckets done / planned from its database, the Slurm
// state of its task when squeue answers, and the merge job's, as a table or JSON.
#include <filesystem>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cmd_fleet.h"
#include "parallax/search/shard.h"

namespace parallax::cli::fleet {

namespace fs = std::filesystem;

int RunStatus(FleetOptions o) {
  if (o.dir.empty()) return Usage("fleet status needs --dir DIR (the directory given to fleet submit)");
  o.dir = Absolute(o.dir);
  while (o.dir.size() > 1 && o.dir.back() == '/') o.dir.pop_back();
  absl::StatusOr<std::optional<Manifest>> m = LoadManifest(o.dir);
  if (!m.ok()) return Usage(std::string(m.status().message()));
  if (!m->has_value())
    return Usage(absl::StrCat(o.dir, ": no fleet there (no ", kManifestName, "; `parallax fleet submit` writes it)"));
  const Manifest& man = **m;
  std::vector<ShardState> shards = ReadShards(o.dir, man);
  const nlohmann::json* last = man.last_submission();
  const SlurmQuery q = QuerySlurm(SubmissionJobIds(last));
  ApplySlurm(q, last, shards);
  std::string merge_job, merge_state, merge_reason;
  if (last != nullptr && last->contains("merge_job")) {
    merge_job = last->value("merge_job", "");
    if (auto it = q.jobs.find(merge_job); it != q.jobs.end()) {
      merge_state = it->second.first;
      merge_reason = it->second.second;
    }
  }
  std::string merged_at;
  if (absl::StatusOr<std::string> t = ReadFile(absl::StrCat(o.dir, "/", kMergedMarker)); t.ok()) merged_at = FirstLine(*t);

  int planned = 0, done = 0, failed = 0, complete = 0, errors = 0;
  for (const ShardState& s : shards) {
    planned += static_cast<int>(s.planned.size());
    done += static_cast<int>(s.done.size());
    failed += static_cast<int>(s.failed.size());
    complete += s.complete();
    errors += !s.error.empty();
  }
  const std::string target = man.j.value("target_db", nlohmann::json()).is_string() ? man.j["target_db"].get<std::string>() : "";

  if (o.json) {
    nlohmann::json list = nlohmann::json::array();
    for (const ShardState& s : shards) {
      nlohmann::json j = {{"shard", search::ToString(search::ShardSpec{s.index, man.shards()})},
                          {"index", s.index},
                          {"db", s.db},
                          {"exists", s.exists},
                          {"state", s.state()},
                          {"complete", s.complete()},
                          {"buckets_planned", s.planned.size()},
                          {"buckets_done", s.done.size()},
                          {"buckets_failed", s.failed.size()},
                          {"planned", s.planned},
                          {"done", std::vector<std::string>(s.done.begin(), s.done.end())},
                          {"failed", std::vector<std::string>(s.failed.begin(), s.failed.end())},
                          {"measurements", s.measurements},
                          {"best_configs", s.best_configs},
                          {"runs", s.runs},
                          {"last_run", s.last_status.empty() ? nlohmann::json()
                                                             : nlohmann::json({{"status", s.last_status},
                                                                               {"started", IsoFromMs(s.last_started_ms)},
                                                                               {"finished", s.last_finished_ms > 0
                                                                                                ? nlohmann::json(IsoFromMs(s.last_finished_ms))
                                                                                                : nlohmann::json()}})},
                          {"slurm", s.slurm_state.empty() ? nlohmann::json()
                                                          : nlohmann::json({{"job", s.slurm_job},
                                                                            {"state", s.slurm_state},
                                                                            {"reason", s.slurm_reason}})}};
      if (!s.error.empty()) j["error"] = s.error;
      list.push_back(std::move(j));
    }
    nlohmann::json out = {
        {"dir", o.dir},
        {"problem", man.problem()},
        {"shards", man.shards()},
        {"tune_args", man.j["tune_args"]},
        {"target_db", target.empty() ? nlohmann::json() : nlohmann::json(target)},
        {"buckets_planned", planned},
        {"buckets_done", done},
        {"buckets_failed", failed},
        {"shards_complete", complete},
        {"complete", complete == man.shards()},
        {"last_submission", last != nullptr ? *last : nlohmann::json()},
        {"slurm", {{"available", q.available}, {"note", q.note}}},
        {"merge", {{"job", merge_job.empty() ? nlohmann::json() : nlohmann::json(merge_job)},
                   {"state", merge_state.empty() ? nlohmann::json() : nlohmann::json(merge_state)},
                   {"reason", merge_reason.empty() ? nlohmann::json() : nlohmann::json(merge_reason)},
                   {"merged_at", merged_at.empty() ? nlohmann::json() : nlohmann::json(merged_at)}}},
        {"shard_status", list}};
    std::cout << out.dump(2) << "\n";
    return errors > 0 ? kExitFailure : kExitOk;
  }

  std::cout << absl::StrFormat("# fleet %s: %s, %d shard(s), %d bucket(s)%s\n", o.dir, man.problem(), man.shards(),
                               planned, target.empty() ? "" : absl::StrCat(", merged into ", target));
  if (last != nullptr) {
    std::cout << absl::StrFormat("# last submitted %s:%s%s\n", last->value("at", "?"),
                                 last->value("array_job", "").empty()
                                     ? std::string(" no shard to run")
                                     : absl::StrCat(" job array ", last->value("array_job", ""), " (shards ",
                                                    ArraySpec(last->value("tasks", std::vector<int>{}), 0), ")"),
                                 merge_job.empty() ? "" : absl::StrCat(", merge job ", merge_job));
  } else {
    std::cout << "# not submitted yet (written with --script-only)\n";
  }
  std::cout << absl::StrFormat("# %-9s %-10s %9s %7s %9s %5s  %-24s %s\n", "shard", "state", "buckets", "failed",
                               "measured", "best", "slurm", "database");
  for (const ShardState& s : shards) {
    const std::string slurm =
        s.slurm_state.empty() ? "-"
                              : absl::StrCat(s.slurm_job, " ", s.slurm_state,
                                             s.slurm_state == "PENDING" && !s.slurm_reason.empty() && s.slurm_reason != "None"
                                                 ? absl::StrCat(" (", s.slurm_reason, ")")
                                                 : "");
    std::cout << absl::StrFormat(
        "  %-9s %-10s %9s %7d %9s %5s  %-24s %s%s\n", search::ToString(search::ShardSpec{s.index, man.shards()}),
        s.state(), absl::StrCat(s.done.size(), "/", s.planned.size()), s.failed.size(),
        s.exists ? absl::StrCat(s.measurements) : "-", s.exists ? absl::StrCat(s.best_configs) : "-", slurm,
        fs::path(s.db).filename().string(), s.exists ? "" : " (not yet)");
    if (!s.error.empty()) std::cout << "      error: " << s.error << "\n";
  }
  std::cout << absl::StrFormat("# %d/%d bucket(s) done, %d/%d shard(s) complete", done, planned, complete,
                               man.shards());
  if (!merge_job.empty())
    std::cout << absl::StrFormat("; merge job %s %s", merge_job,
                                 merge_state.empty() ? "(no longer in the queue)"
                                                     : absl::StrCat(merge_state, merge_reason.empty() || merge_reason == "None"
                                                                                     ? ""
                                                                                     : absl::StrCat(" (", merge_reason, ")")));
  if (!merged_at.empty()) std::cout << "; last merged " << merged_at;
  std::cout << "\n";
  if (!q.available && !q.note.empty()) std::cout << "# " << q.note << "\n";
  return errors > 0 ? kExitFailure : kExitOk;
}

}  // namespace parallax::cli::fleet
