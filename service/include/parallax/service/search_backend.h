// The service's GPU backend: a job is run by the search layer's tuner (search::Tune), with
// its isolated worker subprocess on the job's GPU, writing every measurement and the best
// config per bucket into the server's own database, under the job's tuning_runs row.
//
// A job's problems are grouped by problem key (one Tune over that key's buckets); groups run
// one after another, each with an equal share of the budget that is left. Decode and prefill
// problems are tuned alike; a prefill's buckets are PrefillBucketFor's ("t4096-l4096").
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "parallax/search/tuner.h"
#include "parallax/service/tuning_backend.h"

namespace parallax::service {

struct SearchBackendOptions {
  std::string db_path;                   // the server's database (required)
  std::vector<std::string> worker_argv;  // e.g. {"/proc/self/exe", "worker"} (required)
  std::string cache_dir;                 // compiled kernels; "" = search::DefaultCacheDir()
  int compile_threads = 0;               // 0: every core
  double min_timeout_s = 5;              // watchdog floor per measurement
  search::TuneSpaceOptions space;
  search::TuneDeps deps;                 // tests: fake GPUs and compiler; empty: the driver's
};

class SearchBackend final : public TuningBackend {
 public:
  // FailedPrecondition when no GPU is usable (the caller then serves lookups only).
  static absl::StatusOr<std::unique_ptr<SearchBackend>> Create(SearchBackendOptions options);

  int device_count() override { return static_cast<int>(devices_.size()); }
  absl::StatusOr<cache::DeviceInfo> device(int ordinal) override;
  absl::Status CanTune(const ProblemSpec& p) override;
  absl::Status RunJob(const JobSpec& spec, ProgressSink& sink, const std::atomic<bool>& cancel) override;

 private:
  SearchBackend(SearchBackendOptions options, std::vector<DeviceInfo> devices);

  const SearchBackendOptions o_;
  const std::vector<DeviceInfo> devices_;
};

}  // namespace parallax::service
