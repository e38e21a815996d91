// Offline tuning of one decode, prefill or backward (bwd) problem over shape buckets (decode
// BucketFor, prefill and bwd PrefillBucketFor, bucket.h): the space for the GPU in hand,
// compile pruning on all CPU cores ahead of the measuring queue, one isolated worker per GPU,
// a search strategy per (device, bucket) under a time budget, every measurement stored as it
// arrives, and the winner written where the runtime looks for it. Rerunning the same request
// resumes: what the database already holds is not measured again.
#pragma once

#include <atomic>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "parallax/codegen/bucket.h"
#include "parallax/codegen/variant.h"
#include "parallax/runtime/device.h"
#include "parallax/search/clock.h"
#include "parallax/search/compile.h"
#include "parallax/search/pruning.h"
#include "parallax/search/strategy.h"
#include "parallax/search/tune_timing.h"
#include "parallax/search/warm_start.h"

namespace parallax::search {

struct TuneRequest {
  Problem problem;      // decode or prefill
  Algorithm algorithm;
  std::vector<ShapeBucket> buckets;
};

struct ProgressEvent {
  enum class Kind { kUnitStart, kMeasured, kUnitDone, kMessage };
  Kind kind = Kind::kMessage;
  int device = 0;
  std::string bucket;
  int unit = 0, units = 0;            // 1-based index of this (device, bucket) unit, and the total
  int tried = 0, planned = 0;         // measurements in this unit so far / expected
  int candidates = 0;                 // statically pruned space
  std::string key;                    // kMeasured: what was measured
  Outcome outcome;                    // kMeasured
  std::string best_key;               // best so far in this unit
  double best_us = 0;
  double elapsed_s = 0, eta_s = -1;   // whole run; eta < 0: unknown
  std::string message;
};
using ProgressFn = std::function<void(const ProgressEvent&)>;

struct TuneOptions {
  std::string db_path;
  StrategyOptions strategy;
  double budget_s = 0;                  // <= 0: unlimited
  TuneSpaceOptions space;
  std::string cache_dir;                // compiled kernels for the workers; "" = DefaultCacheDir()
  int compile_threads = 0;              // 0: every core but one per GPU worker
  std::vector<std::string> worker_argv; // e.g. {"/proc/self/exe", "worker"}; "--device N --cache-dir D" appended
  double min_timeout_s = 5, timeout_factor = 20, prepare_timeout_s = 600;
  int max_consecutive_crashes = 8;      // a worker dying this often in a row is the worker's fault
  uint64_t input_seed = 1;
  // Keys measured first in every bucket besides the space: in practice the test-only
  // "-testfault" / "-testhang" variants, to prove a fault or a hang costs one measurement.
  std::vector<std::string> extra_candidates;
  // Lets extra_candidates name test-only variants (else Tune refuses them); the workers are
  // then started with --allow-test-variants. Only `tune --test-faults` and tests set it.
  bool allow_test_variants = false;
  const std::atomic<bool>* cancel = nullptr;
  ProgressFn progress;                  // serialised; may be empty
  nlohmann::json command = nlohmann::json::object();  // stored in the run's params
  // Record measurements under this existing tuning_runs row instead of starting one per
  // GPU; its owner (the service: the row is its job) sets its progress and final status.
  std::optional<int64_t> run_id;
  // Read-only databases whose tuned configs also seed guided and random searches (warm
  // start, warm_start.h), besides db_path's own: tuned on other GPU models or machines. Never
  // created, migrated or written; a missing or unreadable one fails the run at the start.
  std::vector<std::string> seed_dbs;
};

// What tests replace: the GPUs (empty: ask the driver), the compiler, the clock.
struct TuneDeps {
  std::vector<DeviceInfo> devices;
  std::function<CompileFn(const CompileTarget&)> make_compile;  // empty: NvrtcCompileFn
  const Clock* clock = nullptr;                                  // null: SteadyClock()
};

struct UnitReport {
  int device = 0;
  std::string fingerprint;
  std::string bucket;
  int candidates = 0;
  int measured = 0, cached = 0, pruned = 0, failed = 0, wrong = 0, timeout = 0;
  std::string best_key;  // "" when nothing ran ok
  double best_us = 0;
  double default_us = 0;  // the runtime's default variant on this device, when measured
  bool budget_exhausted = false;
  std::string error;     // the unit could not be tuned (worker unusable, shape too big)
  WarmStartPick warm_start;  // the seeds measured first and where they came from
};

struct TuneReport {
  std::string problem_key;
  std::vector<UnitReport> units;
  bool cancelled = false;
  bool budget_exhausted = false;
  double wall_s = 0;
  std::vector<int64_t> run_ids;
  CompileQueue::Stats compile;
  TuneTiming timing;  // where the wall time went (tune_timing.h)
};

// Every GPU the driver shows, queried; FailedPrecondition without a driver or a GPU.
absl::StatusOr<std::vector<DeviceInfo>> VisibleDevices();

// The runtime's untuned choice for the problem on a device of compute capability sm
// (DefaultSchedule; 0: no device known, the portable family's). The portable one is every
// unit's full-shape reference; the device's own (on sm_90 prefill: the wgmma family's) is
// measured first and raced as the baseline whenever it is in the device's space. A problem no
// family on sm serves (multi-token decode has no portable family) gets the default of the
// family that serves it elsewhere (decode_sm90's); "" when none does.
std::string DefaultVariantKey(const Problem& p, const Algorithm& a, int sm = 0);

// FailedPrecondition without a GPU; InvalidArgument for a bad request. A cancelled run
// returns its report with cancelled set.
absl::StatusOr<TuneReport> Tune(const TuneRequest& req, const TuneOptions& o, const TuneDeps& deps = {});

}  // namespace parallax::search
