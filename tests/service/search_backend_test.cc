// The server with its real tuning backend (search::Tune), on a fake GPU with a fake compiler
// and the search tests' fake worker process: a submitted job runs the tuner, streams
// progress, files its measurements under the job's run and serves the winners.
#include <gtest/gtest.h>

#include <set>

#include "absl/strings/match.h"

#include "../search/fake_gpu.h"
#include "parallax/service/proto_convert.h"
#include "parallax/service/search_backend.h"
#include "server_fixture.h"

namespace parallax::service::testing {
namespace {

DeviceInfo FakeGpu() { return parallax::testing::FakeH100(0, "FakeGPU"); }

class SearchBackendTest : public ServerTest {
 protected:
  std::unique_ptr<SearchBackend> Backend() {
    SearchBackendOptions o;
    o.db_path = db_path_;
    o.worker_argv = {PLX_FAKE_WORKER};
    o.cache_dir = dir_ + "/kernels";
    o.compile_threads = 2;
    o.min_timeout_s = 1;
    o.space = {{0}, false, {MathPath::kMma}};  // a small space: quick
    o.deps.devices = {FakeGpu()};
    o.deps.make_compile = [](const search::CompileTarget&) {
      return search::CompileFn([](const std::vector<Variant>&) {
        search::CompileOutcome c;
        c.kind = search::CompileOutcome::Kind::kKeep;
        return c;
      });
    };
    absl::StatusOr<std::unique_ptr<SearchBackend>> b = SearchBackend::Create(o);
    EXPECT_TRUE(b.ok()) << b.status();
    return b.ok() ? *std::move(b) : nullptr;
  }
};

TEST_F(SearchBackendTest, JobTunesEveryProblemAndTheWinnersAreServed) {
  StartServerWith({}, Backend());
  auto c = NewClient();
  v1::Problem narrow = DecodeProblem(8, 1024);
  narrow.set_num_q_heads(16);
  // Two buckets of one problem key (one Tune call) and a second key.
  absl::StatusOr<v1::SubmitTuningResponse> sub =
      c->SubmitTuning(Submit({DecodeProblem(4, 4096), DecodeProblem(1, 900), narrow}, 120));
  ASSERT_TRUE(sub.ok()) << sub.status();

  std::vector<v1::JobProgress> seen;
  absl::StatusOr<v1::JobProgress> last = c->WatchJob(sub->job_id(), [&](const v1::JobProgress& p) { seen.push_back(p); });
  ASSERT_TRUE(last.ok()) << last.status();
  ASSERT_EQ(last->state(), v1::JOB_STATE_DONE) << last->message();
  ASSERT_EQ(last->results_size(), 3);
  EXPECT_GT(last->variants_tried(), 10);
  EXPECT_EQ(last->variants_tried(), last->variants_total());
  EXPECT_GT(seen.size(), 3u);
  bool saw_total = false;
  for (size_t i = 1; i < seen.size(); ++i) {
    EXPECT_GE(seen[i].variants_tried(), seen[i - 1].variants_tried());
    saw_total = saw_total || (seen[i].state() == v1::JOB_STATE_RUNNING && seen[i].variants_total() > 0);
  }
  EXPECT_TRUE(saw_total);

  const std::vector<std::string> buckets = {"b4-l4096", "b1-l1024", "b8-l1024"};
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(last->results(i).bucket(), buckets[i]);
    EXPECT_FALSE(last->results(i).variant_key().empty());
    EXPECT_GT(last->results(i).median_us(), 0);
  }
  v1::GetBestConfigRequest q;
  *q.mutable_device() = DeviceToProto(FakeGpu());
  *q.mutable_problem() = narrow;
  absl::StatusOr<v1::GetBestConfigResponse> best = c->GetBestConfig(q);
  ASSERT_TRUE(best.ok()) << best.status();
  EXPECT_EQ(best->match(), v1::MATCH_EXACT);
  EXPECT_EQ(best->variant_key(), last->results(2).variant_key());

  // Every measurement is filed under the job's run; the tuner started no run of its own.
  cache::MeasurementFilter f;
  f.run_id = sub->job_id();
  absl::StatusOr<std::vector<cache::Measurement>> ms = store().ListMeasurements(f);
  ASSERT_TRUE(ms.ok()) << ms.status();
  EXPECT_EQ(static_cast<int64_t>(ms->size()), last->variants_tried());
  absl::StatusOr<v1::ListJobsResponse> jobs = c->ListJobs(v1::ListJobsRequest());
  ASSERT_TRUE(jobs.ok()) << jobs.status();
  ASSERT_EQ(jobs->jobs_size(), 1);
  EXPECT_EQ(jobs->jobs(0).state(), v1::JOB_STATE_DONE);
}

// A prefill job: tuned by the same tuner (the fake worker plays the prefill bench), filed
// under the prefill bucket, served by GetBestConfig for that bucket and the nearest.
TEST_F(SearchBackendTest, PrefillJobIsTunedAndServed) {
  StartServerWith({}, Backend());
  auto c = NewClient();
  const v1::Problem full = PrefillProblem(1, 2048), chunk = PrefillProblem(2, 256, 8192);
  absl::StatusOr<v1::SubmitTuningResponse> sub = c->SubmitTuning(Submit({full, chunk}, 120));
  ASSERT_TRUE(sub.ok()) << sub.status();
  absl::StatusOr<v1::JobProgress> last = c->WatchJob(sub->job_id(), [](const v1::JobProgress&) {});
  ASSERT_TRUE(last.ok()) << last.status();
  ASSERT_EQ(last->state(), v1::JOB_STATE_DONE) << last->message();
  ASSERT_EQ(last->results_size(), 2);
  EXPECT_EQ(last->results(0).bucket(), "t2048-l2048");
  EXPECT_EQ(last->results(1).bucket(), "t512-l8192");
  for (int i = 0; i < 2; ++i) {
    EXPECT_TRUE(absl::StartsWith(last->results(i).variant_key(), "prefill-")) << last->results(i).variant_key();
    EXPECT_GT(last->results(i).median_us(), 0);
  }
  v1::GetBestConfigRequest q;
  *q.mutable_device() = DeviceToProto(FakeGpu());
  *q.mutable_problem() = PrefillProblem(1, 1500);
  absl::StatusOr<v1::GetBestConfigResponse> best = c->GetBestConfig(q);
  ASSERT_TRUE(best.ok()) << best.status();
  EXPECT_EQ(best->match(), v1::MATCH_EXACT);
  EXPECT_EQ(best->variant_key(), last->results(0).variant_key());
  *q.mutable_problem() = PrefillProblem(1, 4096);  // t4096-l4096: one octave on each axis
  best = c->GetBestConfig(q);
  ASSERT_TRUE(best.ok()) << best.status();
  EXPECT_EQ(best->match(), v1::MATCH_NEAREST_BUCKET);
  EXPECT_EQ(best->bucket(), "t2048-l2048");
}

// A backward job (MODE_BACKWARD) is accepted and tuned by the same tuner (the fake worker
// plays the backward bench), filed under the prefill bucket of the bwd problem key, and
// served by GetBestConfig; the forward of the same shape stays untuned.
TEST_F(SearchBackendTest, BackwardJobIsTunedAndServed) {
  StartServerWith({}, Backend());
  auto c = NewClient();
  v1::Problem bwd = PrefillProblem(1, 2048);
  bwd.set_mode(v1::MODE_BACKWARD);
  absl::StatusOr<v1::SubmitTuningResponse> sub = c->SubmitTuning(Submit({bwd}, 120));
  ASSERT_TRUE(sub.ok()) << sub.status();
  absl::StatusOr<v1::JobProgress> last = c->WatchJob(sub->job_id(), [](const v1::JobProgress&) {});
  ASSERT_TRUE(last.ok()) << last.status();
  ASSERT_EQ(last->state(), v1::JOB_STATE_DONE) << last->message();
  ASSERT_EQ(last->results_size(), 1);
  EXPECT_EQ(last->results(0).bucket(), "t2048-l2048");
  const std::string key = last->results(0).variant_key();
  EXPECT_TRUE(absl::StartsWith(key, "bwd-bf16-d128-h32x8-contig-nowin.learned-plain.mma-")) << key;
  EXPECT_GT(last->results(0).median_us(), 0);
  EXPECT_GT(last->variants_tried(), 1);
  v1::GetBestConfigRequest q;
  *q.mutable_device() = DeviceToProto(FakeGpu());
  bwd.set_seqlen(1500);
  *q.mutable_problem() = bwd;
  absl::StatusOr<v1::GetBestConfigResponse> best = c->GetBestConfig(q);
  ASSERT_TRUE(best.ok()) << best.status();
  EXPECT_EQ(best->match(), v1::MATCH_EXACT);
  EXPECT_EQ(best->variant_key(), key);
  *q.mutable_problem() = PrefillProblem(1, 2048);
  best = c->GetBestConfig(q);
  ASSERT_TRUE(best.ok()) << best.status();
  EXPECT_EQ(best->match(), v1::MATCH_DEFAULT);
}

}  // namespace
}  // namespace parallax::service::testing
