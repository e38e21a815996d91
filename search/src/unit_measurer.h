// The Measurer the tuner gives a strategy for one (device, bucket) unit: answers from the
// database when it already holds the measurement (resume), waits for the candidate's
// compile (pruned ones are skipped), times it in the isolated worker and stores the result
// before anyone sees it, so a crash of the tuner itself loses nothing measured.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "parallax/search/compile.h"
#include "parallax/search/strategy.h"
#include "parallax/search/tuning_db.h"
#include "parallax/search/worker_client.h"

namespace parallax::search::internal {

struct UnitCounts {
  int measured = 0, cached = 0, pruned = 0, failed = 0, wrong = 0, timeout = 0;
};

// Wall seconds of the unit's measurements by where they went (tune_timing.h).
struct UnitTimes {
  double compile_wait_s = 0, measure_s = 0, db_s = 0;
};

class UnitMeasurer final : public Measurer {
 public:
  using ExpectedFn = std::function<double(const Variant& v, int reps)>;  // seconds
  using ResultFn = std::function<void(const std::string& key, const Outcome& o)>;

  UnitMeasurer(TuningDb& db, UnitKey unit, CompileQueue& compile, WorkerClient& worker, ExpectedFn expected,
               int max_consecutive_crashes, const std::vector<Trial>& earlier, ResultFn on_result);

  Outcome Measure(const Variant& v, int reps) override;

  // Set when the worker itself proved unusable; the strategy was then stopped.
  const absl::Status& infra_error() const { return infra_; }
  const UnitCounts& counts() const { return counts_; }
  const UnitTimes& times() const { return times_; }
  // The fastest 'ok' answer so far (for progress), or null.
  const Trial* fastest() const { return fastest_.key.empty() ? nullptr : &fastest_; }

 private:
  Outcome Stop(absl::Status why);
  void Note(const std::string& key, const Outcome& o);

  TuningDb& db_;
  UnitKey unit_;
  CompileQueue& compile_;
  WorkerClient& worker_;
  ExpectedFn expected_;
  int max_crashes_;
  ResultFn on_result_;
  std::map<std::string, Outcome> judged_;  // most samples per key, stored or new
  UnitCounts counts_;
  UnitTimes times_;
  int crash_run_ = 0;
  absl::Status infra_;
  Trial fastest_;
};

}  // namespace parallax::search::internal
