// Tuning jobs: a bounded queue per GPU, one worker thread per GPU running the backend, state
// persisted in the cache's tuning_runs (job id = run id) and pushed to watchers.
//
// Locking: mu_ guards the in-memory jobs, queues and watcher lists and is never held across
// a database call or the backend, so callers on gRPC threads only ever wait for short
// critical sections. Database writes happen on the caller's thread (Submit/Cancel: the
// service's ops pool) or the worker's.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "parallax/cache/run_lock.h"
#include "parallax/cache/store.h"
#include "parallax/service/limits.h"
#include "parallax/service/tuning_backend.h"
#include "parallax/v1/tuner.pb.h"

namespace parallax::service {

// Receives every progress snapshot of one job until a terminal one. Called with the
// manager's lock held: must not block or call back into the manager.
class JobWatcher {
 public:
  virtual ~JobWatcher() = default;
  virtual void OnProgress(const v1::JobProgress& progress) = 0;
};

struct JobManagerOptions {
  ServiceLimits limits;
  absl::Duration persist_interval = absl::Seconds(1);  // progress rows at most this often
  int keep_finished_in_memory = 256;                   // older ones are read from the store
  // Called on the worker thread when a backend returns, before anyone learns the job ended:
  // the backend may have written best configs (the server drops its lookup cache here).
  std::function<void()> on_backend_returned;
};

class JobManager {
 public:
  // Takes the tuners' presence lock on the store's file (cache::RunLock) for its life; when
  // no other tuner or server held it, marks runs left 'running' by a dead process as
  // interrupted (otherwise they may be that process's live runs and are left alone).
  // Registers the backend's GPUs in `store` and starts one worker per GPU. `store` and
  // `backend` must outlive it.
  static absl::StatusOr<std::unique_ptr<JobManager>> Start(cache::Store& store, TuningBackend& backend,
                                                           JobManagerOptions options);
  ~JobManager();  // Shutdown(no grace) unless done already

  int device_count() const { return static_cast<int>(devices_.size()); }
  int64_t interrupted_on_start() const { return interrupted_on_start_; }

  // Validates and queues (FAILED_PRECONDITION without GPUs, RESOURCE_EXHAUSTED when full).
  absl::StatusOr<v1::SubmitTuningResponse> Submit(const v1::SubmitTuningRequest& request);
  absl::StatusOr<v1::JobProgress> Cancel(int64_t job_id);
  // Live or recent jobs from memory, others from the store.
  absl::StatusOr<v1::JobProgress> Get(int64_t job_id);
  absl::StatusOr<std::vector<v1::JobProgress>> List(int limit, v1::JobState state);

  // The job's snapshot if it is in memory; when it is not terminal `w` is registered and
  // gets every later snapshot up to the terminal one. nullopt: ask the store.
  std::optional<v1::JobProgress> Watch(int64_t job_id, JobWatcher* w);
  void Unwatch(int64_t job_id, JobWatcher* w);

  // Stops taking jobs; queued jobs become interrupted at once; running ones get `grace` to
  // finish, then are cancelled and recorded as interrupted. Idempotent.
  void Shutdown(absl::Duration grace);

 private:
  struct Job;
  struct Device {
    int ordinal = 0;
    int64_t device_id = 0;
    std::string fingerprint;
    std::deque<std::shared_ptr<Job>> queue;
    std::shared_ptr<Job> running;
  };
  class Sink;

  JobManager(cache::Store& store, TuningBackend& backend, JobManagerOptions options);
  absl::StatusOr<JobSpec> ResolveSpec(const v1::SubmitTuningRequest& request, int* requested_ordinal);
  void WorkerLoop(int ordinal);
  void RunOne(Device& device, const std::shared_ptr<Job>& job);
  // Under mu_: sends the job's snapshot to its watchers (dropping them once terminal).
  void NotifyLocked(Job& job);
  void RememberFinishedLocked(int64_t job_id);
  void Persist(int64_t job_id, const v1::JobProgress& progress, bool finish);

  cache::Store& store_;
  TuningBackend& backend_;
  std::unique_ptr<cache::RunLock> presence_;
  const JobManagerOptions options_;
  int64_t interrupted_on_start_ = 0;

  std::mutex mu_;
  std::condition_variable work_cv_;  // queues changed or stopping
  std::condition_variable idle_cv_;  // a running job ended
  std::vector<Device> devices_;
  std::map<int64_t, std::shared_ptr<Job>> jobs_;  // live + recently finished
  std::deque<int64_t> finished_order_;
  int reserved_ = 0;  // queue slots taken by submissions still writing their row
  bool stopping_ = false;
  std::vector<std::thread> workers_;
  std::once_flag shutdown_once_;
};

}  // namespace parallax::service
