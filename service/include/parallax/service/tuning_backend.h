// What the tuning service needs from whoever actually tunes: a count of GPUs, their identity
// and a blocking RunJob. The service owns queueing, persistence and progress streaming; the
// backend (search_backend.h: the search layer's GPU tuner; NoGpuBackend here; a fake in the
// tests) only runs one job at a time per device on the thread the service gives it.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "parallax/cache/rows.h"
#include "parallax/codegen/bucket.h"
#include "parallax/codegen/variant.h"

namespace parallax::service {

enum class Strategy { kGuided, kExhaustive, kRandom };
const char* ToString(Strategy s);

// One problem of a job, validated; problem_key and bucket are the cache keys its best config
// is stored under (buckets.h); default_variant_key is the runtime's untuned choice where no
// device is known, the portable family's (DefaultVariant(p, a, 0)); a given device's untuned
// choice may differ (on sm_90 prefill, the wgmma family's): DeviceDefaultKey (buckets.h).
struct ProblemSpec {
  Problem problem;
  Algorithm algorithm;
  int batch = 1;
  int seqlen = 1;       // keys per sequence (decode) or queries per sequence (prefill)
  int context_len = 0;  // prefill: keys per sequence, >= seqlen; 0 in decode
  std::string problem_key;
  ShapeBucket shape_bucket;  // decode BucketFor / prefill PrefillBucketFor (bucket.h)
  std::string bucket;        // its string, the best_configs column
  std::string default_variant_key;
};

struct JobSpec {
  int64_t job_id = 0;  // the tuning_runs row id
  int device_ordinal = 0;
  std::string device_fingerprint;
  std::vector<ProblemSpec> problems;
  double budget_seconds = 0;
  Strategy strategy = Strategy::kGuided;
  int64_t resumed_from_job_id = 0;  // measurements of that run may be reused
};

struct ProblemBestSoFar {
  std::string variant_key;  // "" while nothing was measured
  double median_us = 0;
};

// A full snapshot of a running job as the backend sees it.
struct ProgressUpdate {
  int64_t variants_tried = 0;
  int64_t variants_total = 0;  // 0 while unknown
  std::vector<ProblemBestSoFar> best;  // one per JobSpec::problems entry (may be shorter)
  double eta_seconds = -1;     // < 0: unknown
  std::string message;
};

// Called by the backend from its worker thread, as often as it likes: the service throttles
// what it persists and streams.
class ProgressSink {
 public:
  virtual ~ProgressSink() = default;
  virtual void Update(const ProgressUpdate& update) = 0;
};

class TuningBackend {
 public:
  virtual ~TuningBackend() = default;

  // GPUs this backend can tune on; 0 makes SubmitTuning answer FAILED_PRECONDITION.
  virtual int device_count() = 0;
  // Identity of GPU `ordinal` (0 <= ordinal < device_count()), as stored in the cache.
  virtual absl::StatusOr<cache::DeviceInfo> device(int ordinal) = 0;
  // Checked for every problem when a job is submitted, so a job is refused up front rather
  // than failing later for what it asked: OK, or why not ("mode: ..."; the caller prefixes
  // the problem's path and answers INVALID_ARGUMENT).
  virtual absl::Status CanTune(const ProblemSpec&) { return absl::OkStatus(); }
  // Runs one job to completion on spec.device_ordinal. Writes measurements and best configs
  // to its own cache Store; reports progress through `sink`. Must return soon (seconds)
  // after `cancel` becomes true, with any status: the service decides whether the job
  // counts as cancelled or interrupted. OK means done; any other status means failed.
  virtual absl::Status RunJob(const JobSpec& spec, ProgressSink& sink,
                              const std::atomic<bool>& cancel) = 0;
};

// A server without GPUs: every lookup works, tuning is refused.
class NoGpuBackend final : public TuningBackend {
 public:
  int device_count() override { return 0; }
  absl::StatusOr<cache::DeviceInfo> device(int ordinal) override;
  absl::Status RunJob(const JobSpec& spec, ProgressSink& sink,
                      const std::atomic<bool>& cancel) override;
};

}  // namespace parallax::service
