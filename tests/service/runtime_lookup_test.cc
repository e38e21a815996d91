// The runtime's optional service lookup (runtime_lookup.h) against a live server: tuned
// configs come back as exact / nearest, untuned problems and a dead server as "not found"
// (the runtime then uses its default), and answers are asked for once.
#include "parallax/service/runtime_lookup.h"

#include "parallax/service/proto_convert.h"
#include "parallax/service/validate.h"
#include "server_fixture.h"

namespace parallax::service::testing {
namespace {

// FakeBackend's GPU 0 as the runtime would describe it.
DeviceInfo FakeDevice0() { return DeviceFromProto(FakeBackend::Describe(0)); }

class RuntimeLookupTest : public ServerTest {
 protected:
  // Starts the fake server and tunes `problem` through to the end (the job every test reads).
  template <typename P>
  void TuneToTheEnd(const P& problem, v1::JobProgress* job) {
    StartServer({}, /*fake=*/true);
    auto c = NewClient();
    absl::StatusOr<v1::SubmitTuningResponse> sub = c->SubmitTuning(Submit({problem}));
    ASSERT_TRUE(sub.ok()) << sub.status();
    absl::StatusOr<v1::JobProgress> done = c->WatchJob(sub->job_id(), [](const v1::JobProgress&) {});
    ASSERT_TRUE(done.ok() && done->state() == v1::JOB_STATE_DONE) << done.status();
    *job = *done;
  }
  Runtime::TunedLookup Lookup(absl::Duration retry_after = absl::Seconds(30)) {
    ServiceLookupOptions o;
    o.client.server = server_->address();
    o.retry_after = retry_after;
    absl::StatusOr<Runtime::TunedLookup> l = MakeServiceLookup(FakeDevice0(), o);
    EXPECT_TRUE(l.ok()) << l.status();
    return l.ok() ? *l : nullptr;
  }
};

TEST_F(RuntimeLookupTest, TunedConfigsComeBackAndMissesFallThrough) {
  v1::JobProgress job;
  ASSERT_NO_FATAL_FAILURE(TuneToTheEnd(DecodeProblem(4, 4096), &job));
  const v1::JobProgress* done = &job;

  Runtime::TunedLookup lookup = Lookup();
  const ProblemSpec spec = *ValidateProblem(DecodeProblem(4, 4096), "problem");
  auto exact = lookup(spec.problem, spec.algorithm, BucketFor(3, 3000), nullptr);
  ASSERT_TRUE(exact.ok()) << exact.status();
  EXPECT_EQ(exact->first, done->results(0).variant_key());
  EXPECT_EQ(exact->second, Choice::kTunedExact);
  auto near = lookup(spec.problem, spec.algorithm, BucketFor(8, 8000), nullptr);
  ASSERT_TRUE(near.ok()) << near.status();
  EXPECT_EQ(near->second, Choice::kTunedNearest);

  Problem other = spec.problem;
  other.dtype = DType::kFP16;  // nothing tuned: the runtime keeps its default
  EXPECT_TRUE(absl::IsNotFound(lookup(other, spec.algorithm, BucketFor(4, 4096), nullptr).status()));
}

// A prefill bucket goes to the service as a shape of that bucket (ShapeOf) with its
// context_len, and comes back as the prefill config tuned for it.
TEST_F(RuntimeLookupTest, PrefillBucketsAskForPrefillConfigs) {
  v1::JobProgress job;
  ASSERT_NO_FATAL_FAILURE(TuneToTheEnd(PrefillProblem(1, 4096), &job));
  const v1::JobProgress* done = &job;

  Runtime::TunedLookup lookup = Lookup();
  const ProblemSpec spec = *ValidateProblem(PrefillProblem(1, 4096), "problem");
  auto exact = lookup(spec.problem, spec.algorithm, PrefillBucketFor(1, 3000, 3000), nullptr);
  ASSERT_TRUE(exact.ok()) << exact.status();
  EXPECT_EQ(exact->first, done->results(0).variant_key());
  EXPECT_EQ(exact->second, Choice::kTunedExact);
  auto near = lookup(spec.problem, spec.algorithm, PrefillBucketFor(1, 512, 8192), nullptr);  // a chunk
  ASSERT_TRUE(near.ok()) << near.status();
  EXPECT_EQ(near->first, exact->first);
  EXPECT_EQ(near->second, Choice::kTunedNearest);
  // The decode problem of the same heads: nothing tuned.
  const ProblemSpec decode = *ValidateProblem(DecodeProblem(1, 4096), "problem");
  EXPECT_TRUE(absl::IsNotFound(lookup(decode.problem, decode.algorithm, BucketFor(1, 4096), nullptr).status()));
}

// The service answers one row: one the runtime cannot use (its filter says no) is a miss,
// so the runtime takes its default, and the same answer passes another caller's filter.
TEST_F(RuntimeLookupTest, AnAnswerTheFilterRefusesIsAMiss) {
  v1::JobProgress job;
  ASSERT_NO_FATAL_FAILURE(TuneToTheEnd(DecodeProblem(4, 4096), &job));
  const v1::JobProgress* done = &job;

  Runtime::TunedLookup lookup = Lookup();
  const ProblemSpec spec = *ValidateProblem(DecodeProblem(4, 4096), "problem");
  const TunedKeyFilter none = [](const std::string&) { return false; };
  EXPECT_TRUE(absl::IsNotFound(lookup(spec.problem, spec.algorithm, BucketFor(4, 4096), none).status()));
  const TunedKeyFilter all = [](const std::string&) { return true; };
  auto exact = lookup(spec.problem, spec.algorithm, BucketFor(4, 4096), all);
  ASSERT_TRUE(exact.ok()) << exact.status();
  EXPECT_EQ(exact->first, done->results(0).variant_key());
  EXPECT_EQ(exact->second, Choice::kTunedExact);
}

TEST_F(RuntimeLookupTest, AnswersAreRememberedAndADeadServerIsAMiss) {
  StartServer();
  Runtime::TunedLookup lookup = Lookup(absl::Hours(1));
  const ProblemSpec spec = *ValidateProblem(DecodeProblem(4, 4096), "problem");
  EXPECT_TRUE(absl::IsNotFound(lookup(spec.problem, spec.algorithm, BucketFor(4, 4096), nullptr).status()));
  StopServer();
  // Remembered: no call, the same answer, fast.
  const absl::Time t0 = absl::Now();
  EXPECT_TRUE(absl::IsNotFound(lookup(spec.problem, spec.algorithm, BucketFor(4, 4096), nullptr).status()));
  EXPECT_LT(absl::Now() - t0, absl::Milliseconds(50));
  // Not asked before, server gone: an error within the lookup deadline, never a hang.
  const absl::Time t1 = absl::Now();
  auto gone = lookup(spec.problem, spec.algorithm, BucketFor(64, 65536), nullptr);
  EXPECT_FALSE(gone.ok());
  EXPECT_LT(absl::Now() - t1, absl::Seconds(2));
}

}  // namespace
}  // namespace parallax::service::testing
