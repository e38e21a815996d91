// On a GPU (skipped without one): the real worker process measures, and a faulting and a
// hanging variant cost one 'failed' / 'timeout' measurement each while tuning goes on; the
// in-process bench verifies and times; the tuner's compiled kernels are what the runtime
// loads. The worker binary is plx_search_cli (or `parallax`) next to this test, or
// $PARALLAX_WORKER_BIN.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>

#include "parallax/cache/store.h"
#include "parallax/codegen/generator.h"
#include "parallax/runtime/runtime.h"
#include "parallax/search/compile.h"
#include "parallax/search/decode_bench.h"
#include "parallax/search/prefill_bench.h"
#include "parallax/search/tuner.h"
#include "parallax/search/worker_client.h"

namespace parallax::search {
namespace {

namespace fs = std::filesystem;

std::string WorkerBinary() {
  if (const char* e = std::getenv("PARALLAX_WORKER_BIN"); e && *e) return e;
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n > 0) {
    const fs::path here = fs::path(std::string(buf, size_t(n))).parent_path();
    for (const char* name : {"plx_search_cli", "parallax"})
      if (fs::exists(here / name)) return (here / name).string();
  }
  return PLX_SEARCH_CLI;
}

Problem Qwen() {
  Problem p;
  p.num_q_heads = 16;
  p.num_kv_heads = 8;
  return p;
}

class GpuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<DeviceInfo> d = QueryDevice(0);
    if (!d.ok()) GTEST_SKIP() << "no GPU: " << d.status().message();
    dev_ = *d;
    dir_ = fs::temp_directory_path() / ("search_gpu_test_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    if (!dir_.empty() && !HasFailure()) fs::remove_all(dir_);
  }
  // A tuning run here: the real worker, the mma space without splits, 150 s.
  TuneOptions TuneOptionsHere() const {
    TuneOptions o;
    o.db_path = dir_ + "/tuner.db";
    o.cache_dir = dir_ + "/kernels";
    o.space = {{0}, false, {MathPath::kMma}};
    o.budget_s = 150;
    o.worker_argv = {WorkerBinary(), "worker"};
    o.progress = [](const ProgressEvent& e) {
      if (e.kind != ProgressEvent::Kind::kMeasured)
        std::printf("[tune] %s %s %s\n", e.bucket.c_str(), e.best_key.c_str(), e.message.c_str());
    };
    return o;
  }
  // A runtime over the run's DB and kernels, as an application would open it.
  static std::unique_ptr<Runtime> RuntimeOver(const TuneOptions& o) {
    RuntimeOptions ro;
    ro.db_path = o.db_path;
    ro.cache_dir = o.cache_dir;
    return *Runtime::Create(ro);
  }
  static void Print(const UnitReport& u) {
    std::printf("[tune] %s: best %.2f us %s, default %.2f us, measured %d, pruned %d, failed %d, wrong %d, "
                "timeout %d %s\n",
                u.bucket.c_str(), u.best_us, u.best_key.c_str(), u.default_us, u.measured, u.pruned, u.failed,
                u.wrong, u.timeout, u.error.c_str());
  }
  DeviceInfo dev_;
  std::string dir_;
};

TEST_F(GpuTest, WorkerSurvivesAFaultAndAHang) {
  const std::string def = DefaultVariantKey(Qwen(), Algorithm{});
  WorkerOptions o;
  o.argv = {WorkerBinary(), "worker", "--device", "0", "--cache-dir", dir_ + "/kernels",
            "--allow-test-variants"};  // it measures the test-only keys below
  o.min_timeout_s = 15;  // the worker compiles these itself (no tuner compiled them ahead)
  WorkerClient w(o);
  WorkerRequest prep;
  prep.op = Op::kPrepare;
  prep.default_key = def;
  prep.batch = 1;
  prep.seqlen = 4096;
  absl::Status s = w.Prepare(prep);
  ASSERT_TRUE(s.ok()) << s << " (worker " << o.argv[0] << ")";
  std::printf("[worker] %s\n", w.worker_info().dump().c_str());

  absl::StatusOr<Outcome> ok = w.Measure(def, 5, 0.01);
  ASSERT_TRUE(ok.ok()) << ok.status();
  ASSERT_EQ(ok->verdict, Verdict::kOk) << ok->error;
  EXPECT_GT(ok->median_us, 1.0);
  EXPECT_LT(*ok->rel_error, 1e-2);
  std::printf("[worker] %s: %.2f us (min %.2f, max %.2f), rel_error %.2e\n", def.c_str(), ok->median_us,
              ok->min_us, ok->max_us, *ok->rel_error);

  absl::StatusOr<Outcome> fault = w.Measure(def + "-testfault", 5, 0.01);
  ASSERT_TRUE(fault.ok()) << fault.status();
  EXPECT_EQ(fault->verdict, Verdict::kFailed);
  EXPECT_EQ(fault->error.find("test-only"), std::string::npos) << "refused rather than run: " << fault->error;
  std::printf("[worker] -testfault: %s: %s\n", ToString(fault->verdict), fault->error.c_str());

  absl::StatusOr<Outcome> hang = w.Measure(def + "-testhang", 5, 0.01);
  ASSERT_TRUE(hang.ok()) << hang.status();
  EXPECT_EQ(hang->verdict, Verdict::kTimeout);
  std::printf("[worker] -testhang: %s: %s\n", ToString(hang->verdict), hang->error.c_str());

  Schedule sc = Variant::Parse(def)->schedule();
  sc.splits = 4;
  const std::string other = Variant::Create(Qwen(), Algorithm{}, sc)->Key();
  absl::StatusOr<Outcome> after = w.Measure(other, 5, 0.01);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->verdict, Verdict::kOk) << after->error;
  EXPECT_GE(w.starts(), 3);  // fresh workers after the fault and after the hang
}

// A backward (bwd) problem tuned through the real worker (its BackwardBench): every candidate
// verified against the float64 reference and timed, the winner a bwd key no slower than the
// default, every measurement ok.
TEST_F(GpuTest, TunerTunesABackwardProblem) {
  TuneRequest req;
  req.problem = Qwen();
  req.problem.mode = Mode::kBackward;
  req.buckets = {PrefillBucketFor(1, 2048, 2048)};
  TuneOptions o = TuneOptionsHere();
  o.budget_s = 120;
  absl::StatusOr<TuneReport> r = Tune(req, o);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->units.size(), 1u);
  const UnitReport& u = r->units[0];
  Print(u);
  EXPECT_TRUE(u.error.empty()) << u.error;
  EXPECT_EQ(u.best_key.rfind("bwd-", 0), 0u) << u.best_key;
  EXPECT_GE(u.measured, 2);
  EXPECT_GT(u.default_us, 1.0);
  EXPECT_LE(u.best_us, u.default_us * 1.02);
  std::unique_ptr<cache::Store> db = *cache::Store::Open(o.db_path);
  absl::StatusOr<std::vector<cache::Measurement>> rows = db->ListMeasurements();
  ASSERT_TRUE(rows.ok()) << rows.status();
  EXPECT_FALSE(rows->empty());
  for (const cache::Measurement& m : *rows)
    EXPECT_EQ(m.status, cache::MeasurementStatus::kOk) << m.variant_key << ": " << m.error_text;
}

TEST_F(GpuTest, TunerRecordsFaultAndHangAndMeasuresTheRest) {
  TuneRequest req;
  req.problem = Qwen();
  req.buckets = {BucketFor(1, 4096), BucketFor(8, 16384)};
  const std::string def = DefaultVariantKey(req.problem, req.algorithm);
  TuneOptions o = TuneOptionsHere();
  o.extra_candidates = {def + "-testfault", def + "-testhang"};
  o.allow_test_variants = true;
  absl::StatusOr<TuneReport> r = Tune(req, o);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->units.size(), 2u);
  for (const UnitReport& u : r->units) {
    Print(u);
    EXPECT_TRUE(u.error.empty()) << u.error;
    EXPECT_FALSE(u.best_key.empty());
    EXPECT_EQ(u.best_key.find("-test"), std::string::npos);
    EXPECT_GT(u.measured, 5);
    EXPECT_LE(u.best_us, u.default_us * 1.02);
  }
  std::unique_ptr<cache::Store> db = *cache::Store::Open(o.db_path);
  std::map<std::string, int> by_status;
  absl::StatusOr<std::vector<cache::Measurement>> rows = db->ListMeasurements();
  ASSERT_TRUE(rows.ok()) << rows.status();
  for (const cache::Measurement& m : *rows) {
    if (m.variant_key == def + "-testfault") {
      EXPECT_EQ(m.status, cache::MeasurementStatus::kFailed) << m.error_text;
    } else if (m.variant_key == def + "-testhang") {
      EXPECT_EQ(m.status, cache::MeasurementStatus::kTimeout) << m.error_text;
    } else {
      EXPECT_EQ(m.status, cache::MeasurementStatus::kOk) << m.variant_key << ": " << m.error_text;
    }
    ++by_status[std::string(cache::ToString(m.status))];
  }
  EXPECT_EQ(by_status["failed"], 2);
  EXPECT_EQ(by_status["timeout"], 2);
  // The runtime serves the tuned config.
  std::unique_ptr<Runtime> rt = RuntimeOver(o);
  DecodeArgs a;
  a.batch = 8;
  a.num_q_heads = 16;
  a.num_kv_heads = 8;
  a.head_dim = 128;
  a.seqlen = 16384;
  a.q = a.r = a.k = a.v = a.out = reinterpret_cast<void*>(0x1000);  // planning only
  absl::StatusOr<DecodePlan> plan = rt->PlanDecode(a);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->choice, Choice::kTunedExact);
  EXPECT_EQ(plan->variant.Key(), r->units[1].best_key);
}

// Issue #12 item 2 on a GPU: a prefill tuning run through the real worker (PrefillBench:
// float64 check, full-shape check against the default, graph-replay timing), winners stored
// under the prefill buckets, and Runtime::PlanPrefill serving them exact and nearest.
TEST_F(GpuTest, PrefillTuningRunIsServedByTheRuntime) {
  TuneRequest req;
  req.problem = Qwen();
  req.problem.mode = Mode::kPrefill;
  req.buckets = {PrefillBucketFor(1, 2048, 2048), PrefillBucketFor(1, 512, 8192)};
  TuneOptions o = TuneOptionsHere();
  o.budget_s = 100;  // the suite runs this binary under one timeout (scripts/gpu-suite.sh)
  absl::StatusOr<TuneReport> r = Tune(req, o);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->units.size(), 2u);
  for (const UnitReport& u : r->units) {
    Print(u);
    EXPECT_TRUE(u.error.empty()) << u.error;
    EXPECT_EQ(u.best_key.rfind("prefill-", 0), 0u) << u.best_key;
    EXPECT_GT(u.measured, 5);
    EXPECT_EQ(u.failed + u.timeout, 0) << u.bucket;
    EXPECT_GT(u.default_us, 0);
    EXPECT_LE(u.best_us, u.default_us * 1.02);
  }
  std::unique_ptr<Runtime> rt = RuntimeOver(o);
  PrefillArgs a;
  a.batch = 1;
  a.num_q_heads = 16;
  a.num_kv_heads = 8;
  a.head_dim = 128;
  a.seqlen_q = a.seqlen_k = 2048;  // t2048-l2048
  a.q = a.r = a.k = a.v = a.out = reinterpret_cast<void*>(0x1000);  // planning only
  Choice choice = Choice::kDefault;
  absl::StatusOr<Variant> exact = rt->PlanPrefill(a, &choice);
  ASSERT_TRUE(exact.ok()) << exact.status();
  EXPECT_EQ(choice, Choice::kTunedExact);
  const std::string want = r->units[0].bucket == "t2048-l2048" ? r->units[0].best_key : r->units[1].best_key;
  EXPECT_EQ(exact->Key(), want);
  a.seqlen_q = a.seqlen_k = 4096;  // t4096-l4096: nearest is t2048-l2048 (2 octaves; t512-l8192 is 4)
  absl::StatusOr<Variant> near = rt->PlanPrefill(a, &choice);
  ASSERT_TRUE(near.ok()) << near.status();
  EXPECT_EQ(choice, Choice::kTunedNearest);
  EXPECT_EQ(near->Key(), want);
}

TEST_F(GpuTest, TheRuntimeLoadsWhatTheTunerCompiled) {
  const CompileTarget t = TargetFor(dev_, dir_);
  Schedule sc = CanonicalSchedule(Qwen(), Algorithm{}, DefaultDecodeSchedule(Qwen(), Algorithm{}));
  sc.splits = 2;
  const Variant v = *Variant::Create(Qwen(), Algorithm{}, sc);
  const CompileOutcome c = NvrtcCompileFn(t)({v});
  ASSERT_EQ(c.kind, CompileOutcome::Kind::kKeep) << c.reason;
  auto count = [&] {
    int n = 0;
    for (const auto& e : fs::directory_iterator(fs::path(dir_) / t.arch)) n += e.path().extension() == ".cubin";
    return n;
  };
  const int before = count();
  RuntimeOptions ro;
  ro.cache_dir = dir_;
  std::unique_ptr<Runtime> rt = *Runtime::Create(ro);
  ASSERT_TRUE(rt->Load(v).ok());
  EXPECT_EQ(count(), before) << "the runtime compiled again: ArtifactName no longer matches Runtime::Load";
}

TEST_F(GpuTest, BenchVerifiesAndTimesContiguousAndPaged) {
  std::unique_ptr<Runtime> rt = *Runtime::Create(RuntimeOptions{});
  for (int page : {0, 16}) {
    BenchShape s;
    s.problem = Qwen();
    if (page) {
      s.problem.kv_layout = KvLayout::kPaged;
      s.problem.page_size = page;
    }
    s.batch = 2;
    s.seqlen = 4096;
    BenchOptions o;
    o.reference_key = DefaultVariantKey(s.problem, s.algorithm);
    absl::StatusOr<std::unique_ptr<DecodeBench>> b = DecodeBench::Create(*rt, s, o);
    ASSERT_TRUE(b.ok()) << b.status();
    EXPECT_GE((*b)->num_sets(), 2);  // 2 x L2 of rotating inputs
    const Variant v = *Variant::Parse(o.reference_key);
    absl::StatusOr<VerifyResult> check = (*b)->Verify(v);
    ASSERT_TRUE(check.ok()) << check.status();
    EXPECT_TRUE(check->ok) << check->error;
    absl::StatusOr<Timing> t = (*b)->Time(o.reference_key, 7);
    ASSERT_TRUE(t.ok()) << t.status();
    EXPECT_GT(t->median_us, 1.0);
    EXPECT_LE(t->min_us, t->median_us);
    EXPECT_LE(t->median_us, t->max_us);
    std::printf("[bench] page %d: %.2f us, %.0f GB/s, %d sets, reduced err %.2e\n", page, t->median_us,
                (*b)->bytes_per_launch() / (t->median_us * 1e-6) / 1e9, (*b)->num_sets(), check->reduced_rel);
  }
}

TEST_F(GpuTest, BenchVerifiesAndTimesPrefill) {
  std::unique_ptr<Runtime> rt = *Runtime::Create(RuntimeOptions{});
  struct Case {
    int batch, seqlen_q, seqlen_k, window;
    Affine affine;
  };
  // A full triangle (ragged varlen check), a chunk at the end of a longer sequence with a
  // window, and amplified (ill-conditioned rows masked).
  for (const Case& c : {Case{2, 2048, 2048, 0, Affine::kPlain}, Case{1, 256, 4096, 1024, Affine::kPlain},
                        Case{2, 1024, 1024, 0, Affine::kAmplified}}) {
    PrefillShape s;
    s.problem = Qwen();
    s.problem.mode = Mode::kPrefill;
    s.problem.window = c.window > 0;
    s.algorithm.affine = c.affine;
    s.batch = c.batch;
    s.seqlen_q = c.seqlen_q;
    s.seqlen_k = c.seqlen_k;
    s.window = c.window;
    absl::StatusOr<std::unique_ptr<PrefillBench>> b = PrefillBench::Create(*rt, s, BenchOptions{});
    ASSERT_TRUE(b.ok()) << b.status();
    EXPECT_GE((*b)->num_sets(), 1);
    absl::StatusOr<Timing> t = (*b)->Time("", 5);
    ASSERT_TRUE(t.ok()) << t.status();
    EXPECT_EQ(t->choice, "default");
    EXPECT_GT(t->median_us, 1.0);
    EXPECT_LE(t->min_us, t->median_us);
    EXPECT_LE(t->median_us, t->max_us);
    const Variant v = *Variant::Parse(t->variant);
    absl::StatusOr<VerifyResult> check = (*b)->Verify(v);
    ASSERT_TRUE(check.ok()) << check.status();
    EXPECT_TRUE(check->ok) << check->error;
    EXPECT_LE(check->reduced_rel, check->reduced_tol);
    absl::StatusOr<Timing> again = (*b)->Time(t->variant, 3);  // explicit key: same kernel
    ASSERT_TRUE(again.ok()) << again.status();
    EXPECT_EQ(again->choice, "explicit");
    EXPECT_EQ(again->variant, t->variant);
    std::printf("[bench] prefill b%d q%d k%d w%d: %.1f us, %.1f TFLOP/s, %d sets, reduced %s err %.2e (%ld masked)\n",
                c.batch, c.seqlen_q, c.seqlen_k, c.window, t->median_us,
                (*b)->flops_per_launch() / (t->median_us * 1e-6) / 1e12, (*b)->num_sets(),
                (*b)->Info().value("reduced", "").c_str(), check->reduced_rel, check->masked_rows);
  }
}

// The full-shape check (b) is the harness's, so prefill has it too: against its own default
// variant the error is within the bound, and Info() names the reference.
TEST_F(GpuTest, PrefillBenchComparesTheFullShapeWithAReferenceVariant) {
  std::unique_ptr<Runtime> rt = *Runtime::Create(RuntimeOptions{});
  PrefillShape s;
  s.problem = Qwen();
  s.problem.mode = Mode::kPrefill;
  s.batch = 2;
  s.seqlen_q = s.seqlen_k = 1024;
  BenchOptions o;
  std::string key;
  {
    absl::StatusOr<std::unique_ptr<PrefillBench>> b = PrefillBench::Create(*rt, s, o);
    ASSERT_TRUE(b.ok()) << b.status();
    EXPECT_FALSE((*b)->Info().contains("full_reference"));
    absl::StatusOr<Timing> t = (*b)->Time("", 1);
    ASSERT_TRUE(t.ok()) << t.status();
    key = t->variant;
  }
  o.reference_key = key;
  absl::StatusOr<std::unique_ptr<PrefillBench>> b = PrefillBench::Create(*rt, s, o);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ((*b)->Info().value("full_reference", ""), key);
  absl::StatusOr<VerifyResult> check = (*b)->Verify(*Variant::Parse(key));
  ASSERT_TRUE(check.ok()) << check.status();
  EXPECT_TRUE(check->ok) << check->error;
  EXPECT_LE(check->full_rel, o.full_tolerance);
}

}  // namespace
}  // namespace parallax::search
