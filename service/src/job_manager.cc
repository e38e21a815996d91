#include "parallax/service/job_manager.h"

#include <algorithm>
#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "job_records.h"
#include "parallax/cache/clock.h"
#include "parallax/service/validate.h"

namespace parallax::service {

struct JobManager::Job {
  JobSpec spec;
  v1::JobProgress progress;
  std::atomic<bool> cancel{false};
  bool interrupt = false;  // cancel came from Shutdown: record as interrupted, not cancelled
  std::vector<JobWatcher*> watchers;
  absl::Time last_persist = absl::InfinitePast();
};

// Turns the backend's snapshots into the job's JobProgress (under mu_) and persists them at
// most every persist_interval (outside mu_).
class JobManager::Sink final : public ProgressSink {
 public:
  Sink(JobManager& m, std::shared_ptr<Job> job) : m_(m), job_(std::move(job)) {}
  void Update(const ProgressUpdate& u) override {
    v1::JobProgress copy;
    {
      std::lock_guard lock(m_.mu_);
      v1::JobProgress& p = job_->progress;
      p.set_variants_tried(u.variants_tried);
      p.set_variants_total(u.variants_total);
      p.set_eta_seconds(u.eta_seconds);
      p.set_message(job_->cancel ? "cancel requested" : u.message);
      p.clear_best_so_far();
      const size_t n = std::min(u.best.size(), job_->spec.problems.size());
      for (size_t i = 0; i < n; ++i) {
        v1::ProblemBest* b = p.add_best_so_far();
        b->set_problem_index(static_cast<int>(i));
        b->set_problem_key(job_->spec.problems[i].problem_key);
        b->set_bucket(job_->spec.problems[i].bucket);
        b->set_variant_key(u.best[i].variant_key);
        b->set_median_us(u.best[i].median_us);
      }
      m_.NotifyLocked(*job_);
      const absl::Time now = absl::Now();
      if (now - job_->last_persist < m_.options_.persist_interval) return;
      job_->last_persist = now;
      copy = p;
    }
    m_.Persist(copy.job_id(), copy, /*finish=*/false);
  }

 private:
  JobManager& m_;
  std::shared_ptr<Job> job_;
};

JobManager::JobManager(cache::Store& store, TuningBackend& backend, JobManagerOptions options)
    : store_(store), backend_(backend), options_(std::move(options)) {}

absl::StatusOr<std::unique_ptr<JobManager>> JobManager::Start(cache::Store& store, TuningBackend& backend,
                                                              JobManagerOptions options) {
  std::unique_ptr<JobManager> m(new JobManager(store, backend, std::move(options)));
  absl::StatusOr<int64_t> interrupted = int64_t{0};
  m->presence_ = std::make_unique<cache::RunLock>(store.path(), [&] { interrupted = store.MarkRunningAsInterrupted(); });
  if (!interrupted.ok()) return interrupted.status();
  m->interrupted_on_start_ = *interrupted;
  if (!m->presence_->alone())
    spdlog::warn("another tuner or server is using {}: runs left 'running' are not marked interrupted", store.path());
  const int count = backend.device_count();
  for (int ordinal = 0; ordinal < count; ++ordinal) {
    absl::StatusOr<cache::DeviceInfo> info = backend.device(ordinal);
    if (!info.ok()) return info.status();
    absl::StatusOr<int64_t> id = store.UpsertDevice(*info);
    if (!id.ok()) return id.status();
    Device d;
    d.ordinal = ordinal;
    d.device_id = *id;
    d.fingerprint = info->fingerprint;
    m->devices_.push_back(std::move(d));
  }
  for (int ordinal = 0; ordinal < count; ++ordinal)
    m->workers_.emplace_back([p = m.get(), ordinal] { p->WorkerLoop(ordinal); });
  return m;
}

JobManager::~JobManager() { Shutdown(absl::ZeroDuration()); }

absl::StatusOr<JobSpec> JobManager::ResolveSpec(const v1::SubmitTuningRequest& request, int* requested) {
  absl::StatusOr<JobSpec> spec = ValidateSubmit(request, options_.limits);
  if (!spec.ok()) return spec.status();
  *requested = spec->device_ordinal;
  const int64_t from = request.resume_job_id();
  if (from == 0) return spec;
  // Resume: the stored parameters, overridden by whatever the request sets.
  absl::StatusOr<cache::RunInfo> run = store_.GetRun(from);
  if (absl::IsNotFound(run.status()))
    return absl::NotFoundError(absl::StrCat("resume_job_id=", from, ": no such job"));
  if (!run.ok()) return run.status();
  const v1::JobState state = ProgressFromRun(*run).state();
  if (state != v1::JOB_STATE_INTERRUPTED && state != v1::JOB_STATE_CANCELLED && state != v1::JOB_STATE_FAILED)
    return absl::FailedPreconditionError(absl::StrCat("resume_job_id=", from, ": job is ", v1::JobState_Name(state),
                                                      "; only interrupted, cancelled or failed jobs resume"));
  absl::StatusOr<JobSpec> old = SpecFromParams(run->params, options_.limits, requested);
  if (!old.ok())
    return absl::Status(old.status().code(), absl::StrCat("resume_job_id=", from, ": job ", from,
                                                          " cannot be resumed: ", old.status().message()));
  if (request.budget_seconds() > 0) old->budget_seconds = spec->budget_seconds;
  if (request.strategy() != v1::STRATEGY_UNSPECIFIED) old->strategy = spec->strategy;
  if (request.target_case() == v1::SubmitTuningRequest::kDeviceOrdinal) *requested = spec->device_ordinal;
  old->device_ordinal = *requested;
  old->resumed_from_job_id = from;
  return old;
}

absl::StatusOr<v1::SubmitTuningResponse> JobManager::Submit(const v1::SubmitTuningRequest& request) {
  if (devices_.empty())
    return absl::FailedPreconditionError("no GPU on this server; config lookups still work");
  int requested = -1;
  absl::StatusOr<JobSpec> spec = ResolveSpec(request, &requested);
  if (!spec.ok()) return spec.status();
  for (size_t i = 0; i < spec->problems.size(); ++i)
    if (absl::Status s = backend_.CanTune(spec->problems[i]); !s.ok())
      return absl::InvalidArgumentError(absl::StrCat("problems[", i, "].", s.message()));
  if (requested >= device_count())
    return absl::InvalidArgumentError(absl::StrCat("device_ordinal=", requested, ": this server has ",
                                                   device_count(), " GPU(s)"));
  int ordinal = requested;
  {
    std::lock_guard lock(mu_);
    if (stopping_) return absl::UnavailableError("server is shutting down");
    int queued = reserved_;
    for (const Device& d : devices_) queued += static_cast<int>(d.queue.size());
    if (queued >= options_.limits.max_queue)
      return absl::ResourceExhaustedError(absl::StrCat("job queue full (", queued, " queued, max ",
                                                       options_.limits.max_queue, "); retry later"));
    if (ordinal < 0) {  // any: the device with the least work
      auto load = [](const Device& d) { return d.queue.size() + (d.running ? 1 : 0); };
      ordinal = std::min_element(devices_.begin(), devices_.end(), [&](const Device& a, const Device& b) {
                  return load(a) < load(b);
                })->ordinal;
    }
    ++reserved_;
  }
  Device& device = devices_[ordinal];
  spec->device_ordinal = ordinal;
  spec->device_fingerprint = device.fingerprint;
  absl::StatusOr<int64_t> id = store_.StartRun(device.device_id, ParamsJson(*spec, requested));
  v1::JobProgress progress;
  if (id.ok()) {
    spec->job_id = *id;
    progress.set_job_id(*id);
    progress.set_state(v1::JOB_STATE_QUEUED);
    progress.set_device_fingerprint(device.fingerprint);
    progress.set_started_at_unix_ms(cache::NowUnixMs());
    progress.set_resumed_from_job_id(spec->resumed_from_job_id);
    progress.set_eta_seconds(-1);
    progress.set_message("queued");
    Persist(*id, progress, /*finish=*/false);
  }
  std::unique_lock lock(mu_);
  --reserved_;
  if (!id.ok()) return id.status();
  if (stopping_) {
    lock.unlock();
    progress.set_state(v1::JOB_STATE_INTERRUPTED);
    progress.set_message("server shut down before the job started");
    Persist(*id, progress, /*finish=*/true);
    return absl::UnavailableError("server is shutting down");
  }
  auto job = std::make_shared<Job>();
  job->spec = *std::move(spec);
  job->progress = progress;
  jobs_[*id] = job;
  device.queue.push_back(job);
  v1::SubmitTuningResponse out;
  out.set_job_id(*id);
  out.set_state(v1::JOB_STATE_QUEUED);
  out.set_queue_position(static_cast<int>(device.queue.size()) - 1 + (device.running ? 1 : 0));
  work_cv_.notify_all();
  spdlog::info("job {}: queued on GPU {} ({} problem(s), budget {} s, {}{})", *id, ordinal,
               job->spec.problems.size(), job->spec.budget_seconds, ToString(job->spec.strategy),
               job->spec.resumed_from_job_id ? absl::StrCat(", resumes job ", job->spec.resumed_from_job_id) : "");
  return out;
}

void JobManager::WorkerLoop(int ordinal) {
  std::unique_lock lock(mu_);
  Device& d = devices_[ordinal];
  while (true) {
    work_cv_.wait(lock, [&] { return stopping_ || !d.queue.empty(); });
    if (stopping_) return;  // Shutdown empties the queues itself
    std::shared_ptr<Job> job = d.queue.front();
    d.queue.pop_front();
    d.running = job;
    job->progress.set_state(v1::JOB_STATE_RUNNING);
    job->progress.set_message(absl::StrCat("running on GPU ", ordinal));
    NotifyLocked(*job);
    const v1::JobProgress snapshot = job->progress;
    lock.unlock();
    Persist(snapshot.job_id(), snapshot, /*finish=*/false);
    RunOne(d, job);
    lock.lock();
    d.running.reset();
    idle_cv_.notify_all();
  }
}

void JobManager::RunOne(Device& device, const std::shared_ptr<Job>& job) {
  const int64_t id = job->spec.job_id;
  spdlog::info("job {}: running on GPU {}", id, device.ordinal);
  Sink sink(*this, job);
  absl::Status status;
  // The worker thread is the job's only owner: a throwing backend would otherwise end the
  // process and leave the job 'running' for the next server to find.
  try {
    status = backend_.RunJob(job->spec, sink, job->cancel);
  } catch (const std::exception& e) {
    spdlog::error("job {}: the tuning backend threw: {}", id, e.what());
    status = absl::InternalError("the tuning backend failed unexpectedly (see the server log)");
  } catch (...) {
    spdlog::error("job {}: the tuning backend threw a non-exception", id);
    status = absl::InternalError("the tuning backend failed unexpectedly (see the server log)");
  }
  if (options_.on_backend_returned) options_.on_backend_returned();
  v1::JobProgress final;
  {
    std::lock_guard lock(mu_);
    v1::JobProgress& p = job->progress;
    if (job->interrupt) {
      p.set_state(v1::JOB_STATE_INTERRUPTED);
      p.set_message(absl::StrCat("server shut down while the job ran; resume with resume_job_id=", id));
    } else if (job->cancel) {
      p.set_state(v1::JOB_STATE_CANCELLED);
      p.set_message("cancelled");
    } else if (status.ok()) {
      p.set_state(v1::JOB_STATE_DONE);
      p.set_message("done");
      p.set_eta_seconds(0);
      for (const v1::ProblemBest& b : p.best_so_far())
        if (!b.variant_key().empty()) *p.add_results() = b;
    } else {
      p.set_state(v1::JOB_STATE_FAILED);
      p.set_message(std::string(status.message()));
    }
    p.set_finished_at_unix_ms(cache::NowUnixMs());
    final = p;
  }
  // The row first: a watcher that sees the end and then lists jobs sees the same end.
  Persist(id, final, /*finish=*/true);
  spdlog::info("job {}: {} ({})", id, v1::JobState_Name(final.state()), final.message());
  std::lock_guard lock(mu_);
  NotifyLocked(*job);
  RememberFinishedLocked(id);
}

void JobManager::NotifyLocked(Job& job) {
  for (JobWatcher* w : job.watchers) w->OnProgress(job.progress);
  if (IsTerminal(job.progress.state())) job.watchers.clear();
}

void JobManager::RememberFinishedLocked(int64_t job_id) {
  finished_order_.push_back(job_id);
  while (static_cast<int>(finished_order_.size()) > options_.keep_finished_in_memory) {
    jobs_.erase(finished_order_.front());
    finished_order_.pop_front();
  }
}

void JobManager::Persist(int64_t job_id, const v1::JobProgress& progress, bool finish) {
  if (absl::Status s = store_.UpdateRunProgress(job_id, ProgressJson(progress)); !s.ok())
    spdlog::warn("job {}: saving progress failed: {}", job_id, s.ToString());
  if (!finish) return;
  if (absl::Status s = store_.FinishRun(job_id, RunStatusOf(progress.state())); !s.ok())
    spdlog::warn("job {}: saving its end failed: {}", job_id, s.ToString());
}

absl::StatusOr<v1::JobProgress> JobManager::Cancel(int64_t job_id) {
  std::unique_lock lock(mu_);
  auto it = jobs_.find(job_id);
  if (it == jobs_.end()) {
    lock.unlock();
    absl::StatusOr<v1::JobProgress> stored = Get(job_id);
    if (!stored.ok()) return stored.status();
    return absl::FailedPreconditionError(absl::StrCat("job ", job_id, " is already ",
                                                      v1::JobState_Name(stored->state())));
  }
  Job& job = *it->second;
  v1::JobProgress& p = job.progress;
  if (p.state() == v1::JOB_STATE_QUEUED) {
    std::deque<std::shared_ptr<Job>>& q = devices_[job.spec.device_ordinal].queue;
    q.erase(std::remove(q.begin(), q.end(), it->second), q.end());
    p.set_state(v1::JOB_STATE_CANCELLED);
    p.set_message("cancelled before it started");
    p.set_finished_at_unix_ms(cache::NowUnixMs());
    NotifyLocked(job);
    RememberFinishedLocked(job_id);
    const v1::JobProgress copy = p;
    lock.unlock();
    Persist(job_id, copy, /*finish=*/true);
    spdlog::info("job {}: cancelled while queued", job_id);
    return copy;
  }
  if (p.state() == v1::JOB_STATE_RUNNING) {
    job.cancel = true;
    p.set_message("cancel requested");
    NotifyLocked(job);
    spdlog::info("job {}: cancel requested", job_id);
    return p;
  }
  return absl::FailedPreconditionError(absl::StrCat("job ", job_id, " is already ", v1::JobState_Name(p.state())));
}

absl::StatusOr<v1::JobProgress> JobManager::Get(int64_t job_id) {
  {
    std::lock_guard lock(mu_);
    if (auto it = jobs_.find(job_id); it != jobs_.end()) return it->second->progress;
  }
  absl::StatusOr<cache::RunInfo> run = store_.GetRun(job_id);
  if (absl::IsNotFound(run.status())) return absl::NotFoundError(absl::StrCat("job ", job_id, ": no such job"));
  if (!run.ok()) return run.status();
  return ProgressFromRun(*run);
}

absl::StatusOr<std::vector<v1::JobProgress>> JobManager::List(int limit, v1::JobState state) {
  cache::RunFilter filter;
  filter.limit = limit;
  if (state == v1::JOB_STATE_QUEUED || state == v1::JOB_STATE_RUNNING) filter.status = cache::RunStatus::kRunning;
  else if (state != v1::JOB_STATE_UNSPECIFIED) filter.status = RunStatusOf(state);
  absl::StatusOr<std::vector<cache::RunInfo>> runs = store_.ListRuns(filter);
  if (!runs.ok()) return runs.status();
  std::vector<v1::JobProgress> out;
  std::lock_guard lock(mu_);
  for (const cache::RunInfo& run : *runs) {
    // Memory is newer than the row (progress rows are throttled).
    auto it = jobs_.find(run.id);
    v1::JobProgress p = it != jobs_.end() ? it->second->progress : ProgressFromRun(run);
    if (state == v1::JOB_STATE_UNSPECIFIED || p.state() == state) out.push_back(std::move(p));
  }
  return out;
}

std::optional<v1::JobProgress> JobManager::Watch(int64_t job_id, JobWatcher* w) {
  std::lock_guard lock(mu_);
  auto it = jobs_.find(job_id);
  if (it == jobs_.end()) return std::nullopt;
  if (!IsTerminal(it->second->progress.state())) it->second->watchers.push_back(w);
  return it->second->progress;
}

void JobManager::Unwatch(int64_t job_id, JobWatcher* w) {
  std::lock_guard lock(mu_);
  auto it = jobs_.find(job_id);
  if (it == jobs_.end()) return;
  std::vector<JobWatcher*>& ws = it->second->watchers;
  ws.erase(std::remove(ws.begin(), ws.end(), w), ws.end());
}

void JobManager::Shutdown(absl::Duration grace) {
  std::call_once(shutdown_once_, [&] {
    std::vector<v1::JobProgress> dropped;
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
      for (Device& d : devices_) {
        for (const std::shared_ptr<Job>& job : d.queue) {
          v1::JobProgress& p = job->progress;
          p.set_state(v1::JOB_STATE_INTERRUPTED);
          p.set_message(absl::StrCat("server shut down before the job started; resume with resume_job_id=",
                                     p.job_id()));
          p.set_finished_at_unix_ms(cache::NowUnixMs());
          NotifyLocked(*job);
          RememberFinishedLocked(p.job_id());
          dropped.push_back(p);
        }
        d.queue.clear();
      }
    }
    work_cv_.notify_all();
    for (const v1::JobProgress& p : dropped) Persist(p.job_id(), p, /*finish=*/true);
    {
      std::unique_lock lock(mu_);
      auto idle = [&] {
        return std::none_of(devices_.begin(), devices_.end(), [](const Device& d) { return d.running != nullptr; });
      };
      idle_cv_.wait_until(lock, absl::ToChronoTime(absl::Now() + grace), idle);
      for (Device& d : devices_) {
        if (!d.running) continue;
        d.running->interrupt = true;
        d.running->cancel = true;
        d.running->progress.set_message("server shutting down; stopping the job");
        NotifyLocked(*d.running);
      }
    }
    for (std::thread& t : workers_) t.join();
    if (!dropped.empty() || !workers_.empty())
      spdlog::info("job manager stopped ({} queued job(s) interrupted)", dropped.size());
  });
}

}  // namespace parallax::service
