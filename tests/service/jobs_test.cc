// SubmitTuning / WatchJob / CancelJob / ListJobs: queueing, limits, cancellation, restart
// persistence and resume, graceful shutdown, and the no-GPU answer.
#include <thread>

#include "parallax/cache/run_lock.h"
#include "parallax/service/validate.h"
#include "server_fixture.h"

namespace parallax::service::testing {
namespace {

class JobsTest : public ServerTest {};

bool Running(const v1::JobProgress& p) { return p.state() == v1::JOB_STATE_RUNNING; }

TEST_F(JobsTest, NoGpuRefusesTuningButServesLookups) {
  StartServer();
  auto c = NewClient();
  absl::StatusOr<v1::SubmitTuningResponse> r = c->SubmitTuning(Submit({DecodeProblem()}));
  EXPECT_TRUE(absl::IsFailedPrecondition(r.status())) << r.status();
  EXPECT_EQ(r.status().message(), "no GPU on this server; config lookups still work");
  absl::StatusOr<v1::GetBestConfigResponse> lookup = c->GetBestConfig(Lookup(DecodeProblem()));
  ASSERT_TRUE(lookup.ok()) << lookup.status();
  EXPECT_EQ(lookup->match(), v1::MATCH_DEFAULT);
}

TEST_F(JobsTest, JobRunsToTheEndAndItsResultIsServed) {
  ServerOptions o;
  o.lookup_cache_ttl = absl::Hours(1);  // only the job's end may refresh the lookup below
  StartServer(o, /*fake=*/true);
  auto c = NewClient();
  EXPECT_EQ(c->GetBestConfig(Lookup(DecodeProblem(3, 4000)))->match(), v1::MATCH_DEFAULT);
  v1::Problem prefill = DecodeProblem(1, 2048);
  prefill.set_mode(v1::MODE_PREFILL);
  absl::StatusOr<v1::SubmitTuningResponse> sub = c->SubmitTuning(Submit({DecodeProblem(4, 4096), prefill}));
  ASSERT_TRUE(sub.ok()) << sub.status();
  EXPECT_EQ(sub->state(), v1::JOB_STATE_QUEUED);

  std::vector<v1::JobProgress> seen;
  absl::StatusOr<v1::JobProgress> last = c->WatchJob(sub->job_id(), [&](const v1::JobProgress& p) { seen.push_back(p); });
  ASSERT_TRUE(last.ok()) << last.status();
  EXPECT_EQ(last->state(), v1::JOB_STATE_DONE) << last->message();
  ASSERT_EQ(last->results_size(), 2);
  EXPECT_EQ(last->variants_tried(), last->variants_total());
  EXPECT_EQ(last->results(0).bucket(), "b4-l4096");
  for (size_t i = 1; i < seen.size(); ++i) EXPECT_GE(seen[i].variants_tried(), seen[i - 1].variants_tried());

  absl::StatusOr<v1::GetBestConfigResponse> best = c->GetBestConfig(Lookup(DecodeProblem(3, 4000)));
  ASSERT_TRUE(best.ok());
  EXPECT_EQ(best->match(), v1::MATCH_EXACT);
  EXPECT_EQ(best->variant_key(), last->results(0).variant_key());

  // A finished job still answers WatchJob, with one final snapshot.
  int count = 0;
  ASSERT_TRUE(c->WatchJob(sub->job_id(), [&](const v1::JobProgress&) { ++count; }).ok());
  EXPECT_EQ(count, 1);
}

TEST_F(JobsTest, SubmitValidationNamesTheField) {
  ServerOptions o;
  o.limits.max_problems_per_request = 2;
  o.limits.max_budget_seconds = 100;
  StartServer(o, /*fake=*/true);
  auto c = NewClient();
  v1::Problem bad = DecodeProblem();
  bad.set_head_dim(100);
  struct Case {
    v1::SubmitTuningRequest request;
    const char* field;
  };
  std::vector<Case> cases = {
      {Submit({}), "problems: at least one"},
      {Submit({DecodeProblem(), DecodeProblem(), DecodeProblem()}), "problems: 3 given, at most 2"},
      {Submit({DecodeProblem(), bad}), "problems[1].head_dim=100"},
      {Submit({DecodeProblem()}, 0), "budget_seconds"},
      {Submit({DecodeProblem()}, 101), "budget_seconds"},
      {Submit({DecodeProblem()}, std::nan("")), "budget_seconds"},
  };
  Case ordinal{Submit({DecodeProblem()}), "device_ordinal=3"};
  ordinal.request.set_device_ordinal(3);
  cases.push_back(ordinal);
  Case any{Submit({DecodeProblem()}), "any_device"};
  any.request.set_any_device(false);
  cases.push_back(any);
  Case strategy{Submit({DecodeProblem()}), "strategy"};
  strategy.request.set_strategy(static_cast<v1::Strategy>(42));
  cases.push_back(strategy);
  Case resume{Submit({DecodeProblem()}), "problems: must be empty when resume_job_id"};
  resume.request.set_resume_job_id(1);
  cases.push_back(resume);
  for (const Case& k : cases) {
    absl::StatusOr<v1::SubmitTuningResponse> r = c->SubmitTuning(k.request);
    EXPECT_TRUE(absl::IsInvalidArgument(r.status())) << k.field << ": " << r.status();
    EXPECT_NE(r.status().message().find(k.field), absl::string_view::npos)
        << "expected '" << k.field << "' in: " << r.status().message();
  }
  v1::SubmitTuningRequest missing;
  missing.set_resume_job_id(999);
  EXPECT_TRUE(absl::IsNotFound(c->SubmitTuning(missing).status()));
}

TEST_F(JobsTest, QueueFullIsResourceExhausted) {
  ServerOptions o;
  o.limits.max_queue = 2;
  FakeBackendOptions f;
  f.hold = true;
  StartServer(o, /*fake=*/true, f);
  auto c = NewClient();
  absl::StatusOr<v1::SubmitTuningResponse> first = c->SubmitTuning(Submit({DecodeProblem()}));
  ASSERT_TRUE(first.ok());
  WatchUntil(*c, first->job_id(), Running);  // out of the queue, held by the backend
  absl::StatusOr<v1::SubmitTuningResponse> second = c->SubmitTuning(Submit({DecodeProblem()}));
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second->queue_position(), 1);
  ASSERT_TRUE(c->SubmitTuning(Submit({DecodeProblem()})).ok());
  absl::StatusOr<v1::SubmitTuningResponse> full = c->SubmitTuning(Submit({DecodeProblem()}));
  EXPECT_TRUE(absl::IsResourceExhausted(full.status())) << full.status();
  EXPECT_NE(full.status().message().find("queue full"), absl::string_view::npos);
  fake_->Release();
  EXPECT_EQ(c->WatchJob(second->job_id(), nullptr)->state(), v1::JOB_STATE_DONE);
  EXPECT_TRUE(c->SubmitTuning(Submit({DecodeProblem()})).ok());  // room again
}

TEST_F(JobsTest, CancelQueuedAndRunningJobs) {
  FakeBackendOptions f;
  f.hold = true;
  StartServer({}, /*fake=*/true, f);
  auto c = NewClient();
  const int64_t running = c->SubmitTuning(Submit({DecodeProblem()}))->job_id();
  WatchUntil(*c, running, Running);
  const int64_t queued = c->SubmitTuning(Submit({DecodeProblem()}))->job_id();

  absl::StatusOr<v1::CancelJobResponse> r = c->CancelJob(queued);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->progress().state(), v1::JOB_STATE_CANCELLED);

  r = c->CancelJob(running);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->progress().state(), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(r->progress().message(), "cancel requested");
  EXPECT_EQ(c->WatchJob(running, nullptr)->state(), v1::JOB_STATE_CANCELLED);

  EXPECT_TRUE(absl::IsFailedPrecondition(c->CancelJob(running).status()));
  EXPECT_TRUE(absl::IsNotFound(c->CancelJob(987654).status()));
  absl::StatusOr<v1::CancelJobResponse> zero = c->CancelJob(0);
  EXPECT_TRUE(absl::IsInvalidArgument(zero.status()));
  EXPECT_NE(zero.status().message().find("job_id"), absl::string_view::npos);

  // The store agrees.
  EXPECT_EQ(store().GetRun(queued)->status, cache::RunStatus::kCancelled);
  EXPECT_EQ(store().GetRun(running)->status, cache::RunStatus::kCancelled);
  v1::ListJobsRequest cancelled;
  cancelled.set_state(v1::JOB_STATE_CANCELLED);
  EXPECT_EQ(c->ListJobs(cancelled)->jobs_size(), 2);
}

TEST_F(JobsTest, WatchUnknownJob) {
  StartServer({}, /*fake=*/true);
  auto c = NewClient();
  EXPECT_TRUE(absl::IsNotFound(c->WatchJob(424242, nullptr).status()));
  absl::StatusOr<v1::JobProgress> bad = c->WatchJob(-1, nullptr);
  EXPECT_TRUE(absl::IsInvalidArgument(bad.status()));
  EXPECT_NE(bad.status().message().find("job_id"), absl::string_view::npos);
}

TEST_F(JobsTest, RestartKeepsJobsAndResumes) {
  FakeBackendOptions f;
  f.hold = true;
  StartServer({}, /*fake=*/true, f);
  auto c = NewClient();
  const int64_t running = c->SubmitTuning(Submit({DecodeProblem(8, 8192)}))->job_id();
  WatchUntil(*c, running, Running);
  const int64_t queued = c->SubmitTuning(Submit({DecodeProblem()}))->job_id();
  // A watcher sees the job end when the server stops.
  std::thread watcher([&, client = NewClient()] {
    absl::StatusOr<v1::JobProgress> last = client->WatchJob(running, nullptr);
    ASSERT_TRUE(last.ok()) << last.status();
    EXPECT_EQ(last->state(), v1::JOB_STATE_INTERRUPTED);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  StopServer(absl::ZeroDuration());
  watcher.join();
  // And a crash: a run left 'running' by a process that died.
  absl::StatusOr<std::vector<cache::DeviceInfo>> devices = store().ListDevices();
  ASSERT_TRUE(devices.ok() && devices->size() == 1);
  const int64_t crashed = *store().StartRun((*devices)[0].id, {{"problems", nlohmann::json::array()}});

  f.hold = false;
  StartServer({}, /*fake=*/true, f);
  c = NewClient();
  EXPECT_EQ(server_->jobs().interrupted_on_start(), 1);
  v1::ListJobsRequest all;
  absl::StatusOr<v1::ListJobsResponse> jobs = c->ListJobs(all);
  ASSERT_TRUE(jobs.ok()) << jobs.status();
  ASSERT_EQ(jobs->jobs_size(), 3);
  for (const v1::JobProgress& p : jobs->jobs()) EXPECT_EQ(p.state(), v1::JOB_STATE_INTERRUPTED) << p.job_id();
  EXPECT_EQ(jobs->jobs(0).job_id(), crashed);  // newest first
  EXPECT_EQ(c->WatchJob(queued, nullptr)->state(), v1::JOB_STATE_INTERRUPTED);

  v1::SubmitTuningRequest resume;
  resume.set_resume_job_id(running);
  absl::StatusOr<v1::SubmitTuningResponse> resumed = c->SubmitTuning(resume);
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  absl::StatusOr<v1::JobProgress> done = c->WatchJob(resumed->job_id(), nullptr);
  ASSERT_TRUE(done.ok());
  EXPECT_EQ(done->state(), v1::JOB_STATE_DONE);
  EXPECT_EQ(done->resumed_from_job_id(), running);
  ASSERT_EQ(done->results_size(), 1);
  EXPECT_EQ(done->results(0).bucket(), "b8-l8192");  // the original problem
  // A done job cannot be resumed; the crashed one's parameters are unusable.
  resume.set_resume_job_id(resumed->job_id());
  EXPECT_TRUE(absl::IsFailedPrecondition(c->SubmitTuning(resume).status()));
  resume.set_resume_job_id(crashed);
  EXPECT_TRUE(absl::IsFailedPrecondition(c->SubmitTuning(resume).status()));
}

TEST_F(JobsTest, ServerAndTunersRespectEachOthersRunningRows) {
  StartServer({}, /*fake=*/true);
  // A tuner started while the server lives (the server's own backend, or a CLI beside it)
  // is not alone, so it marks none of the server's 'running' rows interrupted.
  bool alone = false;
  { cache::RunLock tuner(db_path_, [&] { alone = true; }); }
  EXPECT_FALSE(alone);
  StopServer();
  { cache::RunLock tuner(db_path_, [&] { alone = true; }); }
  EXPECT_TRUE(alone);

  // A server started while a CLI tuner runs leaves that tuner's live run alone...
  absl::StatusOr<std::vector<cache::DeviceInfo>> devices = store().ListDevices();
  ASSERT_TRUE(devices.ok() && !devices->empty());
  const int64_t live = *store().StartRun((*devices)[0].id, {{"problems", nlohmann::json::array()}});
  {
    cache::RunLock cli_tuner(db_path_, nullptr);
    StartServer({}, /*fake=*/true);
    EXPECT_EQ(server_->jobs().interrupted_on_start(), 0);
    auto c = NewClient();
    EXPECT_NE(c->WatchJob(live, nullptr)->state(), v1::JOB_STATE_INTERRUPTED);  // the stored row, untouched
    StopServer();
  }
  // ...and the next server, alone, takes it for a crash's leftover.
  StartServer({}, /*fake=*/true);
  EXPECT_EQ(server_->jobs().interrupted_on_start(), 1);
  EXPECT_EQ(NewClient()->WatchJob(live, nullptr)->state(), v1::JOB_STATE_INTERRUPTED);
}

TEST_F(JobsTest, GracefulShutdownLetsRunningJobsFinish) {
  FakeBackendOptions f;
  f.hold = true;
  StartServer({}, /*fake=*/true, f);
  auto c = NewClient();
  const int64_t id = c->SubmitTuning(Submit({DecodeProblem()}))->job_id();
  WatchUntil(*c, id, Running);
  std::thread release([this] {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    fake_->Release();
  });
  StopServer(absl::Seconds(20));
  release.join();
  EXPECT_EQ(store().GetRun(id)->status, cache::RunStatus::kDone);
}

TEST_F(JobsTest, FailedJobKeepsTheBackendError) {
  FakeBackendOptions f;
  f.fail = true;
  f.devices = 2;
  StartServer({}, /*fake=*/true, f);
  auto c = NewClient();
  v1::SubmitTuningRequest r = Submit({DecodeProblem()});
  r.set_device_ordinal(1);
  absl::StatusOr<v1::SubmitTuningResponse> sub = c->SubmitTuning(r);
  ASSERT_TRUE(sub.ok());
  absl::StatusOr<v1::JobProgress> last = c->WatchJob(sub->job_id(), nullptr);
  ASSERT_TRUE(last.ok());
  EXPECT_EQ(last->state(), v1::JOB_STATE_FAILED);
  EXPECT_EQ(last->message(), "fake tuner failure");
  EXPECT_NE(last->device_fingerprint().find("Fake GPU 1"), std::string::npos);
  // Resubmitting a failed job resumes it.
  v1::SubmitTuningRequest resume;
  resume.set_resume_job_id(sub->job_id());
  EXPECT_TRUE(c->SubmitTuning(resume).ok());
}

}  // namespace
}  // namespace parallax::service::testing
