// Damaged tuning_runs rows (params/progress that are not what the server writes) and a
// throwing backend: the server keeps serving, before and after a restart, and says which job
// is damaged instead of crashing.
#include <nlohmann/json.hpp>

#include "parallax/cache/db.h"
#include "server_fixture.h"

namespace parallax::service::testing {
namespace {

class DamagedRowsTest : public ServerTest {
 protected:
  int64_t DeviceId() {
    absl::StatusOr<std::vector<cache::DeviceInfo>> devices = store().ListDevices();
    EXPECT_TRUE(devices.ok() && !devices->empty());
    return devices.ok() && !devices->empty() ? (*devices)[0].id : 0;
  }
  // A finished (failed, so resumable were it readable) run with these params.
  int64_t FailedRun(const nlohmann::json& params) {
    absl::StatusOr<int64_t> id = store().StartRun(DeviceId(), params);
    EXPECT_TRUE(id.ok()) << id.status();
    EXPECT_TRUE(store().FinishRun(*id, cache::RunStatus::kFailed).ok());
    return *id;
  }
  void Sql(const std::string& sql) {
    absl::StatusOr<cache::Db> db = cache::Db::Open(db_path_);
    ASSERT_TRUE(db.ok()) << db.status();
    ASSERT_TRUE(db->Exec(sql).ok()) << sql;
  }
};

const v1::JobProgress* Find(const v1::ListJobsResponse& r, int64_t id) {
  for (const v1::JobProgress& p : r.jobs())
    if (p.job_id() == id) return &p;
  return nullptr;
}

TEST_F(DamagedRowsTest, ListWatchCancelResumeAndRestartSurviveDamagedRows) {
  StartServer({}, /*fake=*/true);
  std::vector<int64_t> damaged = {
      FailedRun(nlohmann::json::array()),
      FailedRun("x"),
      FailedRun(42),
      FailedRun({{"problems", "x"}, {"budget_seconds", "abc"}, {"requested_device", "z"}}),
      FailedRun({{"device_fingerprint", 7}, {"resumed_from_job_id", "y"}}),
  };
  // Text that is no JSON at all (the cache reads it as a JSON string), one that is not UTF-8,
  // and progress that is not a JobProgress.
  for (const char* text : {"'not json {'", "CAST(X'ff7b' AS TEXT)"}) {
    const int64_t id = FailedRun(nlohmann::json::object());
    Sql("UPDATE tuning_runs SET params_json = " + std::string(text) + " WHERE id = " + std::to_string(id));
    damaged.push_back(id);
  }
  const int64_t bad_progress = FailedRun(nlohmann::json::object());
  Sql("UPDATE tuning_runs SET progress_json = '[1, 2]' WHERE id = " + std::to_string(bad_progress));
  // Left 'running': the next server marks it interrupted and must still list it.
  const int64_t running = *store().StartRun(DeviceId(), "running and damaged");

  auto c = NewClient();
  for (int round = 0; round < 2; ++round) {
    SCOPED_TRACE(round == 0 ? "first server" : "after a restart");
    absl::StatusOr<v1::ListJobsResponse> jobs = c->ListJobs({});
    ASSERT_TRUE(jobs.ok()) << jobs.status();
    for (int64_t id : damaged) {
      const v1::JobProgress* p = Find(*jobs, id);
      ASSERT_NE(p, nullptr) << id;
      EXPECT_EQ(p->state(), v1::JOB_STATE_FAILED) << id;
      EXPECT_NE(p->message().find("stored record damaged (params_json"), std::string::npos) << p->message();
      EXPECT_NE(p->message().find("cannot be resumed"), std::string::npos) << p->message();

      absl::StatusOr<v1::JobProgress> watched = c->WatchJob(id, nullptr, absl::Seconds(10));
      ASSERT_TRUE(watched.ok()) << watched.status();
      EXPECT_EQ(watched->message(), p->message());

      absl::StatusOr<v1::CancelJobResponse> cancel = c->CancelJob(id);
      EXPECT_TRUE(absl::IsFailedPrecondition(cancel.status())) << cancel.status();

      v1::SubmitTuningRequest resume;
      resume.set_resume_job_id(id);
      absl::StatusOr<v1::SubmitTuningResponse> r = c->SubmitTuning(resume);
      EXPECT_TRUE(absl::IsFailedPrecondition(r.status())) << r.status();
      EXPECT_NE(r.status().message().find(absl::StrCat("resume_job_id=", id, ": job ", id, " cannot be resumed")),
                absl::string_view::npos)
          << r.status();
    }
    const v1::JobProgress* p = Find(*jobs, bad_progress);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(p->state(), v1::JOB_STATE_FAILED);
    EXPECT_NE(p->message().find("progress_json: not a JSON object"), std::string::npos) << p->message();
    // Only params matter for a resume: this one still resubmits (and then fails validation,
    // having no problems), without crashing.
    v1::SubmitTuningRequest resume;
    resume.set_resume_job_id(bad_progress);
    EXPECT_TRUE(absl::IsFailedPrecondition(c->SubmitTuning(resume).status()));

    ASSERT_NE(Find(*jobs, running), nullptr);
    for (v1::JobState state : {v1::JOB_STATE_FAILED, v1::JOB_STATE_INTERRUPTED, v1::JOB_STATE_QUEUED}) {
      v1::ListJobsRequest filtered;
      filtered.set_state(state);
      EXPECT_TRUE(c->ListJobs(filtered).ok()) << v1::JobState_Name(state);
    }
    // Still serving, and still able to run a job.
    EXPECT_TRUE(c->GetBestConfig(Lookup(DecodeProblem())).ok());
    absl::StatusOr<v1::SubmitTuningResponse> sub = c->SubmitTuning(Submit({DecodeProblem()}));
    ASSERT_TRUE(sub.ok()) << sub.status();
    EXPECT_EQ(c->WatchJob(sub->job_id(), nullptr, absl::Seconds(30))->state(), v1::JOB_STATE_DONE);

    StopServer();
    StartServer({}, /*fake=*/true);
    c = NewClient();
  }
  EXPECT_EQ(Find(*c->ListJobs({}), running)->state(), v1::JOB_STATE_INTERRUPTED);
}

TEST_F(DamagedRowsTest, ThrowingBackendFailsTheJobNotTheServer) {
  FakeBackendOptions f;
  f.throws = true;
  StartServer({}, /*fake=*/true, f);
  auto c = NewClient();
  absl::StatusOr<v1::SubmitTuningResponse> sub = c->SubmitTuning(Submit({DecodeProblem()}));
  ASSERT_TRUE(sub.ok()) << sub.status();
  absl::StatusOr<v1::JobProgress> last = c->WatchJob(sub->job_id(), nullptr, absl::Seconds(30));
  ASSERT_TRUE(last.ok()) << last.status();
  EXPECT_EQ(last->state(), v1::JOB_STATE_FAILED);
  EXPECT_NE(last->message().find("failed unexpectedly"), std::string::npos) << last->message();
  EXPECT_TRUE(c->SubmitTuning(Submit({DecodeProblem()})).ok());  // the worker thread lives on
}

}  // namespace
}  // namespace parallax::service::testing
