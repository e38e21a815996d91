// On a GPU (label gpu; skipped without one): BackwardBench, what the tuner's worker prepares
// for a bwd problem, makes its sets (the forward run for their statistics), verifies a
// variant's dq, dr, dk, dv against the float64 reference on the reduced shape and times the
// backward by graph replay; a variant of another problem is refused; the full-shape check
// against a reference variant passes for that variant itself.
#include <gtest/gtest.h>

#include <cstdio>
#include <memory>
#include <string>

#include "parallax/runtime/runtime.h"
#include "parallax/search/backward_bench.h"

namespace parallax::search {
namespace {

class BackwardBenchGpu : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<DeviceInfo> d = QueryDevice(0);
    if (!d.ok()) GTEST_SKIP() << "no GPU: " << d.status().message();
    absl::StatusOr<std::unique_ptr<Runtime>> rt = Runtime::Create(RuntimeOptions{});
    ASSERT_TRUE(rt.ok()) << rt.status();
    rt_ = *std::move(rt);
  }
  static BackwardShape Shape(int batch, int seqlen_q, int seqlen_k, int window, Probe probe, Affine affine) {
    BackwardShape s;
    s.problem.mode = Mode::kBackward;
    s.problem.num_q_heads = 16;
    s.problem.num_kv_heads = 8;
    s.problem.head_dim = 128;
    s.problem.window = window > 0;
    s.algorithm = Algorithm{probe, affine};
    s.batch = batch;
    s.seqlen_q = seqlen_q;
    s.seqlen_k = seqlen_k;
    s.window = window;
    return s;
  }
  std::unique_ptr<Runtime> rt_;
};

// One variant (the family default) measured and verified per case: a full triangle (ragged
// varlen and padded checks), a chunk with a window, amplified, softmax.
TEST_F(BackwardBenchGpu, MeasuresAndVerifiesTheDefault) {
  for (const BackwardShape& s : {Shape(2, 2048, 2048, 0, Probe::kLearned, Affine::kPlain),
                                 Shape(1, 256, 4096, 1024, Probe::kLearned, Affine::kPlain),
                                 Shape(2, 1024, 1024, 0, Probe::kLearned, Affine::kAmplified),
                                 Shape(2, 1024, 1024, 0, Probe::kNone, Affine::kPlain)}) {
    SCOPED_TRACE(ProblemKey(s.problem, s.algorithm) + " b" + std::to_string(s.batch) + " q" +
                 std::to_string(s.seqlen_q) + " k" + std::to_string(s.seqlen_k));
    absl::StatusOr<std::unique_ptr<BackwardBench>> b = BackwardBench::Create(*rt_, s, BenchOptions{});
    ASSERT_TRUE(b.ok()) << b.status();
    EXPECT_GE((*b)->num_sets(), 1);
    absl::StatusOr<Timing> t = (*b)->Time("", 5);
    ASSERT_TRUE(t.ok()) << t.status();
    EXPECT_EQ(t->choice, "default");
    EXPECT_EQ(t->variant.rfind("bwd-", 0), 0u) << t->variant;
    EXPECT_GT(t->median_us, 1.0);
    EXPECT_LE(t->min_us, t->median_us);
    EXPECT_LE(t->median_us, t->max_us);
    const Variant v = *Variant::Parse(t->variant);
    absl::StatusOr<VerifyResult> check = (*b)->Verify(v);
    ASSERT_TRUE(check.ok()) << check.status();
    EXPECT_TRUE(check->ok) << check->error;
    EXPECT_GT(check->reduced_rel, 0);  // compared, not skipped
    EXPECT_LE(check->reduced_rel, check->reduced_tol);
    absl::StatusOr<Timing> again = (*b)->Time(t->variant, 3);  // explicit key: same kernel
    ASSERT_TRUE(again.ok()) << again.status();
    EXPECT_EQ(again->choice, "explicit");
    EXPECT_EQ(again->variant, t->variant);
    std::printf("[bench] %s: %.1f us, %.1f TFLOP/s (attention-equivalent), %d sets, reduced %s err %.2e\n",
                t->variant.c_str(), t->median_us, (*b)->flops_per_launch() / (t->median_us * 1e-6) / 1e12,
                (*b)->num_sets(), (*b)->Info().value("reduced", "").c_str(), check->reduced_rel);
  }
}

// A schedule other than the default (block_m 16) verifies too; a variant of another problem
// (softmax's on Parallax inputs) is refused by the runtime rather than measured.
TEST_F(BackwardBenchGpu, OtherSchedulesVerifyAndForeignVariantsAreRefused) {
  const BackwardShape s = Shape(2, 512, 512, 0, Probe::kLearned, Affine::kPlain);
  absl::StatusOr<std::unique_ptr<BackwardBench>> b = BackwardBench::Create(*rt_, s, BenchOptions{});
  ASSERT_TRUE(b.ok()) << b.status();
  Schedule sc = DefaultSchedule(s.problem, s.algorithm);
  sc.block_m = 16;
  absl::StatusOr<Variant> small = Variant::Create(s.problem, s.algorithm, sc);
  ASSERT_TRUE(small.ok()) << small.status();
  absl::StatusOr<VerifyResult> check = (*b)->Verify(*small);
  ASSERT_TRUE(check.ok()) << check.status();
  EXPECT_TRUE(check->ok) << check->error;
  const Algorithm softmax{Probe::kNone, Affine::kPlain};
  absl::StatusOr<Variant> foreign =
      Variant::Create(s.problem, softmax, CanonicalSchedule(s.problem, softmax, DefaultSchedule(s.problem, softmax)));
  ASSERT_TRUE(foreign.ok()) << foreign.status();
  EXPECT_FALSE((*b)->Verify(*foreign).ok());
}

// (b): against its own default as the reference variant, the full shape agrees (dq and dr
// by float32 atomics: equal up to the order of the adds), and Info() names the reference.
TEST_F(BackwardBenchGpu, ComparesTheFullShapeWithAReferenceVariant) {
  const BackwardShape s = Shape(2, 1024, 1024, 0, Probe::kLearned, Affine::kPlain);
  const Variant def = *Variant::Create(s.problem, s.algorithm,
                                       CanonicalSchedule(s.problem, s.algorithm, DefaultSchedule(s.problem, s.algorithm)));
  BenchOptions o;
  o.reference_key = def.Key();
  absl::StatusOr<std::unique_ptr<BackwardBench>> b = BackwardBench::Create(*rt_, s, o);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ((*b)->Info().value("full_reference", ""), def.Key());
  absl::StatusOr<VerifyResult> check = (*b)->Verify(def);
  ASSERT_TRUE(check.ok()) << check.status();
  EXPECT_TRUE(check->ok) << check->error;
  EXPECT_LE(check->full_rel, 1e-3);
}

}  // namespace
}  // namespace parallax::search
