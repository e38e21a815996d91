// A TuningBackend for tests: pretends to have GPUs, reports progress over time and, when a
// job completes, writes each problem's "best" variant into the cache like a real tuner.
#pragma once

#include <atomic>
#include <condition_variable>
#include <mutex>

#include "absl/time/time.h"
#include "parallax/cache/store.h"
#include "parallax/service/tuning_backend.h"
#include "parallax/v1/tuner.pb.h"

namespace parallax::service::testing {

struct FakeBackendOptions {
  int devices = 1;
  int steps = 5;                                   // progress updates per job
  absl::Duration step_time = absl::Milliseconds(10);
  bool hold = false;  // jobs wait after their first step until Release()
  bool fail = false;  // jobs end with an error instead of results
  bool throws = false;  // RunJob throws (a backend bug the job manager must survive)
};

class FakeBackend final : public TuningBackend {
 public:
  FakeBackend(cache::Store* store, FakeBackendOptions options) : store_(store), o_(options) {}

  int device_count() override { return o_.devices; }
  absl::StatusOr<cache::DeviceInfo> device(int ordinal) override;
  absl::Status RunJob(const JobSpec& spec, ProgressSink& sink, const std::atomic<bool>& cancel) override;

  // Lets held jobs (and all later ones) run to the end.
  void Release();
  int jobs_started() const { return started_.load(); }

  // How a client describes fake GPU `ordinal`; its fingerprint is the one device() reports.
  static v1::DeviceFingerprint Describe(int ordinal);
  // The variant the fake reports as best: valid for the problem, not the default one.
  static std::string BestKeyFor(const ProblemSpec& p);

 private:
  cache::Store* store_;
  const FakeBackendOptions o_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool released_ = false;
  std::atomic<int> started_{0};
};

}  // namespace parallax::service::testing
