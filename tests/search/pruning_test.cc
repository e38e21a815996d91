// Static pruning with the device's limits, compile pruning from ptxas reports, compile
// classes, and a real NVRTC compile into the worker's cache (CPU only).
#include <gtest/gtest.h>

#include <filesystem>
#include <set>

#include "parallax/codegen/generator.h"
#include "parallax/runtime/runtime.h"
#include "parallax/search/compile.h"
#include "parallax/search/cost_model.h"
#include "parallax/search/pruning.h"
#include "device_fill.h"  // search/src: white-box

namespace parallax::search {
namespace {

DeviceInfo Device(int cc_major, int cc_minor, int smem_optin_kib, int smem_sm_kib) {
  DeviceInfo d;
  d.name = "TestGPU";
  d.cc_major = cc_major;
  d.cc_minor = cc_minor;
  d.sm_count = 132;
  d.max_smem_per_block_optin = smem_optin_kib * 1024;
  d.smem_per_sm = smem_sm_kib * 1024;
  d.l2_bytes = 50 << 20;
  d.mem_bytes = int64_t(80) << 30;
  d.driver_version = 13000;
  d.nvrtc_version = "13.0";
  return d;
}

Problem Qwen() {
  Problem p;
  p.num_q_heads = 16;
  p.num_kv_heads = 8;
  return p;
}

TEST(Limits, ComeFromTheDeviceNotThePreset) {
  const DeviceLimits l = LimitsFor(Device(9, 0, 100, 120));
  EXPECT_EQ(l.max_smem_per_block, 100 * 1024);
  EXPECT_EQ(l.smem_per_sm, 120 * 1024);
  EXPECT_EQ(l.arch, "sm_90");
  EXPECT_EQ(l.max_threads_per_sm, 2048);  // from the sm_90 preset
  EXPECT_EQ(LimitsFor(Device(12, 0, 99, 100)).arch, "sm_120");  // unknown arch: sm_90 preset, own smem
}

TEST(StaticSpace, PrunesBySharedMemoryPerBlockAndPerSm) {
  const TuneSpaceOptions o{{0}, false, {MathPath::kMma, MathPath::kFma}};
  const StaticSpace big = BuildStaticSpace(Qwen(), Algorithm{}, LimitsFor(Device(9, 0, 227, 228)), o);
  const StaticSpace small = BuildStaticSpace(Qwen(), Algorithm{}, LimitsFor(Device(8, 6, 48, 64)), o);
  EXPECT_GT(big.variants.size(), small.variants.size());
  EXPECT_GT(small.stats.smem_over_block, 0);
  const DeviceLimits sl = LimitsFor(Device(8, 6, 48, 64));
  for (const Variant& v : small.variants) {
    EXPECT_LE(v.smem_bytes(), 48 * 1024) << v.Key();
    EXPECT_GE(CtasPerSm(v, sl), 1) << v.Key();
  }
}

TEST(StaticSpace, SplitCountsAndFusedTwins) {
  const DeviceLimits l = LimitsFor(Device(9, 0, 227, 228));
  const StaticSpace base = BuildStaticSpace(Qwen(), Algorithm{}, l, {{0}, false, {MathPath::kMma}});
  const StaticSpace full = BuildStaticSpace(Qwen(), Algorithm{}, l, {{0, 1, 4}, true, {MathPath::kMma}});
  // splits 0 and 4 get a fused twin, split 1 (no merge) does not.
  EXPECT_EQ(full.variants.size(), base.variants.size() * 5);
  std::set<std::string> keys;
  for (const Variant& v : full.variants) {
    EXPECT_TRUE(keys.insert(v.Key()).second) << "duplicate " << v.Key();
    if (v.schedule().fused_merge) {
      EXPECT_NE(v.schedule().splits, 1);
    }
  }
}

TEST(CompilePrune, SpillsRegistersAndOccupancy) {
  const Variant v = BuildStaticSpace(Qwen(), Algorithm{}, DeviceLimits::Sm90(), {{0}, false, {MathPath::kMma}})
                        .variants.front();
  const DeviceLimits l = DeviceLimits::Sm90();
  KernelResources main{"plx_decode", 96, 0, 0, 0, 0}, merge{"plx_decode_merge", 32, 0, 0, 0, 0};
  EXPECT_FALSE(CompilePruneReason(v, {main, merge}, l));
  KernelResources spill = main;
  spill.spill_store_bytes = 8;
  EXPECT_NE(CompilePruneReason(v, {spill, merge}, l)->find("spills"), std::string::npos);
  KernelResources spill_merge = merge;
  spill_merge.spill_load_bytes = 4;
  EXPECT_TRUE(CompilePruneReason(v, {main, spill_merge}, l));
  KernelResources regs = main;
  regs.registers = 256;
  EXPECT_NE(CompilePruneReason(v, {regs, merge}, l)->find("registers"), std::string::npos);
  // 255 registers x 256 threads = 65280 fits in 64 Ki; a limit of 32 Ki does not.
  DeviceLimits tight = l;
  tight.regs_per_sm = 32 * 1024;
  KernelResources heavy = main;
  heavy.registers = 255;
  const Variant w8 = *Variant::Create(v.problem(), v.algorithm(), [&] {
    Schedule s = v.schedule();
    s.warps = 8;
    s.block_n = 128;
    return s;
  }());
  EXPECT_FALSE(CompilePruneReason(w8, {heavy}, l));
  EXPECT_NE(CompilePruneReason(w8, {heavy}, tight)->find("no CTA"), std::string::npos);
}

TEST(CompileClass, SplitCountsShareOneBinary) {
  const StaticSpace s =
      BuildStaticSpace(Qwen(), Algorithm{}, DeviceLimits::Sm90(), {{0, 2, 8}, true, {MathPath::kMma}});
  std::set<std::string> classes;
  for (const Variant& v : s.variants) {
    const std::string c = CompileClassKey(v);
    classes.insert(c);
    EXPECT_NE(c.find("-splitauto"), std::string::npos) << c;
    EXPECT_EQ(v.schedule().fused_merge, c.find("-fused") != std::string::npos) << c;
  }
  EXPECT_EQ(classes.size() * 3, s.variants.size());  // 3 split counts per class
}

TEST(CostModel, PrefersFillingTheGpuAndSplittingLongSequences) {
  const CostInputs c = CostInputsFor(Device(9, 0, 227, 228));
  Schedule s = CanonicalSchedule(Qwen(), Algorithm{}, DefaultDecodeSchedule(Qwen(), Algorithm{}));
  s.splits = 1;
  const Variant one = *Variant::Create(Qwen(), Algorithm{}, s);
  s.splits = 16;
  const Variant many = *Variant::Create(Qwen(), Algorithm{}, s);
  // batch 1 x 64k keys: 8 CTAs without splits leave most of 132 SMs idle.
  EXPECT_LT(EstimateDecodeUs(many, 1, 65536, c), EstimateDecodeUs(one, 1, 65536, c) / 3);
  // Bandwidth bound: at most ~3.35 TB/s.
  const double bytes = DecodeBytes(Qwen(), Algorithm{}, 128, 65536);
  EXPECT_GT(EstimateDecodeUs(one, 128, 65536, c), bytes / 3.35e6);
  EXPECT_GE(ModelSplits(one, 1, 65536, c), 8);
  EXPECT_EQ(ModelSplits(one, 128, 1024, c), 1);
}

// Prefill is compute-bound: time grows with the visible pairs (causal: ~L^2 / 2), Parallax
// costs about twice softmax, the fma path is far slower, a grid that leaves SMs idle costs, and
// EstimateUs follows the bucket's kind.
TEST(CostModel, PrefillIsComputeBound) {
  const CostInputs c = CostInputsFor(Device(9, 0, 227, 228));
  Problem p = Qwen();
  p.mode = Mode::kPrefill;
  const Algorithm learned{}, softmax{Probe::kNone, Affine::kPlain};
  const Variant v = *Variant::Create(p, learned, CanonicalSchedule(p, learned, DefaultSchedule(p, learned)));
  const Variant sm = *Variant::Create(p, softmax, CanonicalSchedule(p, softmax, DefaultSchedule(p, softmax)));
  const double t4k = EstimatePrefillUs(v, 4, 4096, 4096, c), t8k = EstimatePrefillUs(v, 4, 8192, 8192, c);
  EXPECT_GT(t8k / t4k, 3.5);
  EXPECT_LT(t8k / t4k, 4.5);
  const double ratio = t4k / EstimatePrefillUs(sm, 4, 4096, 4096, c);
  EXPECT_GT(ratio, 1.8);
  EXPECT_LT(ratio, 2.2);
  // A 512-query chunk at the end of 8192 keys: about 512 x 8192 pairs, not the triangle.
  EXPECT_LT(EstimatePrefillUs(v, 4, 512, 8192, c), t8k / 4);
  // Never faster than ~1 PFLOP/s of Parallax arithmetic on one GPU.
  const double flops = 4.0 * 16 * (4096.0 * 4097 / 2) * 128 * 8;
  EXPECT_GT(t4k, flops / 1e9);
  Schedule fs = DefaultSchedule(p, learned);
  fs.path = MathPath::kFma;
  if (absl::StatusOr<Variant> f = Variant::Create(p, learned, CanonicalSchedule(p, learned, fs)); f.ok()) {
    EXPECT_GT(EstimatePrefillUs(*f, 4, 4096, 4096, c), 5 * t4k);
  }
  EXPECT_DOUBLE_EQ(EstimateUs(v, PrefillBucketFor(4, 4096, 4096), c), t4k);
  const Variant d = *Variant::Create(Qwen(), learned, CanonicalSchedule(Qwen(), learned, DefaultSchedule(Qwen(), learned)));
  EXPECT_DOUBLE_EQ(EstimateUs(d, BucketFor(8, 4096), c), EstimateDecodeUs(d, 8, 4096, c));
}

TEST(NvrtcCompile, WritesTheBinaryForEveryMemberAndReusesItsReport) {
  const std::string dir = std::string(PLX_BINARY_DIR) + "/search_compile_test_cache";
  std::filesystem::remove_all(dir);
  const DeviceInfo dev = Device(9, 0, 227, 228);
  const CompileTarget t = TargetFor(dev, dir);
  const StaticSpace s = BuildStaticSpace(Qwen(), Algorithm{}, t.limits, {{0, 4}, false, {MathPath::kMma}});
  std::vector<Variant> cls;
  for (const Variant& v : s.variants)
    if (CompileClassKey(v) == CompileClassKey(s.variants.front())) cls.push_back(v);
  ASSERT_EQ(cls.size(), 2u);
  CompileFn fn = NvrtcCompileFn(t);
  const CompileOutcome first = fn(cls);
  ASSERT_NE(first.kind, CompileOutcome::Kind::kFailed) << first.reason;
  EXPECT_FALSE(first.cached);
  EXPECT_FALSE(first.kernels.empty());
  if (first.kind == CompileOutcome::Kind::kKeep)
    for (const Variant& v : cls) {
      const std::string path = ArtifactPath(t, ArtifactName(v, GenerateSource(v), t));
      EXPECT_TRUE(std::filesystem::exists(path)) << path;
    }
  const CompileOutcome again = fn(cls);
  EXPECT_TRUE(again.cached);
  EXPECT_EQ(again.kind, first.kind);

  CompileQueue q(fn, 2);
  q.Schedule(cls);
  EXPECT_EQ(q.Wait(cls[1]).kind, first.kind);
  EXPECT_EQ(q.stats().classes, 1);
  std::filesystem::remove_all(dir);
}

TEST(DeviceFill, TheInputGeneratorCompilesForEveryTunedArch) {
  for (const char* arch : {"sm_80", "sm_86", "sm_89", "sm_90"}) {
    CompileOptions co;
    co.arch = arch;
    absl::StatusOr<CompileResult> r = CompileCuda(internal::DeviceFillSource(), "plx_fill_rows.cu", co);
    ASSERT_TRUE(r.ok()) << arch << ": " << r.status();
    EXPECT_FALSE(r->cubin.empty());
    EXPECT_FALSE(r->has_spills()) << r->log;
  }
}

TEST(ArtifactName, DependsOnEverythingThatChangesTheBinary) {
  const Variant v = BuildStaticSpace(Qwen(), Algorithm{}, DeviceLimits::Sm90(), {{0}, false, {MathPath::kMma}})
                        .variants.front();
  const CompileTarget t = TargetFor(Device(9, 0, 227, 228), "/tmp/x");
  const std::string src = GenerateSource(v);
  const std::string a = ArtifactName(v, src, t);
  EXPECT_EQ(a.size(), 16u);
  CompileTarget t2 = t;
  t2.driver_version = 13010;
  EXPECT_NE(ArtifactName(v, src, t2), a);
  EXPECT_NE(ArtifactName(v, src + " ", t), a);
  EXPECT_EQ(ArtifactPath(t, a), "/tmp/x/sm_90/" + a + ".cubin");
}

}  // namespace
}  // namespace parallax::search
