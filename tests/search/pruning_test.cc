// Static pruning with the device's limits, compile pruning from ptxas reports, compile
// classes, and a real NVRTC compile into the worker's cache (CPU only).
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <set>

#include "parallax/codegen/generator.h"
#include "parallax/runtime/binary_cache.h"
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

// decode_sm90 enumerates its cluster-merge schedules itself (fused_merge): the fused twins
// the space adds must not repeat them, nor twin a schedule that is fused already.
TEST(StaticSpace, TheSm90DecodeSpaceHasEachKeyOnce) {
  Problem p = Qwen();
  p.mode = Mode::kDecode;
  const StaticSpace s =
      BuildStaticSpace(p, Algorithm{}, LimitsFor(Device(9, 0, 227, 228)), {{0, 1, 2, 4, 8, 16, 32}, true, {MathPath::kWgmma}});
  std::set<std::string> keys;
  int cluster = 0;
  for (const Variant& v : s.variants) {
    EXPECT_TRUE(keys.insert(v.Key()).second) << "duplicate " << v.Key();
    cluster += v.schedule().fused_merge;
  }
  EXPECT_FALSE(keys.empty());
  EXPECT_GT(cluster, 0);
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

// The backward is costed on its own model (EstimateUs follows the variant's mode, on prefill
// buckets): several times the forward's time at the same shape, and close to the first
// kernel's measured 12.3 ms at B 4, 16 heads, L 4096, D 128 on an H200 (cost_model.cc), so
// that the watchdog's patience and the shards' balance are about right.
TEST(CostModel, BackwardIsCostedAsTheForwardTimesItsWork) {
  const CostInputs c = CostInputsFor(Device(9, 0, 227, 228));
  Problem p;
  p.num_q_heads = p.num_kv_heads = 16;
  p.mode = Mode::kBackward;
  const Algorithm learned{};
  const Variant bwd = *Variant::Create(p, learned, CanonicalSchedule(p, learned, DefaultSchedule(p, learned)));
  const double t = EstimateBackwardUs(bwd, 4, 4096, 4096, c);
  EXPECT_DOUBLE_EQ(EstimateUs(bwd, PrefillBucketFor(4, 4096, 4096), c), t);
  EXPECT_GT(t, 12300 / 2.0);
  EXPECT_LT(t, 12300 * 2.0);
  Problem fp = p;
  fp.mode = Mode::kPrefill;
  Schedule fs = DefaultSchedule(fp, learned);  // the portable (mma.sync) forward
  const Variant fwd = *Variant::Create(fp, learned, CanonicalSchedule(fp, learned, fs));
  EXPECT_GT(t, 2.5 * EstimatePrefillUs(fwd, 4, 4096, 4096, c));
  // Quadratic in the context, and a 512-query chunk costs a fraction of the full triangle.
  const double t8k = EstimateBackwardUs(bwd, 4, 8192, 8192, c);
  EXPECT_GT(t8k / t, 3.5);
  EXPECT_LT(t8k / t, 4.5);
  EXPECT_LT(EstimateBackwardUs(bwd, 4, 512, 8192, c), t8k / 4);
  // The static space for the GPU: prefill_bwd's mma schedules and, on sm_90, prefill_bwd_sm90's wgmma ones.
  const StaticSpace space = BuildStaticSpace(p, learned, LimitsFor(Device(9, 0, 227, 228)), TuneSpaceOptions{});
  ASSERT_FALSE(space.variants.empty());
  for (const Variant& v : space.variants) {
    EXPECT_EQ(v.problem().mode, Mode::kBackward) << v.Key();
    EXPECT_TRUE(v.schedule().path == MathPath::kMma || v.schedule().path == MathPath::kWgmma) << v.Key();
    EXPECT_GT(EstimateUs(v, PrefillBucketFor(1, 4096, 4096), c), 0) << v.Key();
  }
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
      const std::string path = ArtifactPath(t, v, ArtifactName(v, GenerateSource(v), t));
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

TEST(ArtifactName, DependsOnEverythingThatChangesTheBinaryButTheDriver) {
  const Variant v = BuildStaticSpace(Qwen(), Algorithm{}, DeviceLimits::Sm90(), {{0}, false, {MathPath::kMma}})
                        .variants.front();
  const CompileTarget t = TargetFor(Device(9, 0, 227, 228), "/tmp/x");
  const std::string src = GenerateSource(v);
  const std::string a = ArtifactName(v, src, t);
  EXPECT_EQ(a.size(), 16u);
  // Not the driver: NVRTC's cubin does not depend on it, so a driver update keeps the cache.
  CompileTarget t2 = t;
  t2.driver_version = 13010;
  EXPECT_EQ(ArtifactName(v, src, t2), a);
  t2.nvrtc_version = "13.1";
  EXPECT_NE(ArtifactName(v, src, t2), a);
  // The runtime's own naming (Runtime::Load): the tuner's binaries are what the worker finds.
  EXPECT_EQ(ArtifactPath(t, v, a), BinaryCacheEntryFor(v.Key(), src, CompileArch(t, v), t.nvrtc_version,
                                                        t.cache_dir).path.string());
  EXPECT_NE(ArtifactName(v, src + " ", t), a);
  EXPECT_EQ(ArtifactPath(t, v, a), "/tmp/x/sm_90/" + a + ".cubin");
}

// ---- the sm_90a wgmma prefill family (codegen/families/prefill_sm90) ----

Problem QwenPrefill() {
  Problem p = Qwen();
  p.mode = Mode::kPrefill;
  return p;
}

size_t CountPath(const std::vector<Variant>& vs, MathPath path) {
  return std::count_if(vs.begin(), vs.end(), [path](const Variant& v) { return v.schedule().path == path; });
}

// The device's own default (DefaultSchedule for its sm) as a variant.
Variant DeviceDefault(const Problem& p, const Algorithm& a, int sm) {
  return *Variant::Create(p, a, CanonicalSchedule(p, a, DefaultSchedule(p, a, sm)));
}

TEST(DevicePaths, FollowTheFamiliesThatRunOnTheDevice) {
  EXPECT_EQ(SmOfArch("sm_90"), 90);
  EXPECT_EQ(SmOfArch("sm_90a"), 90);
  EXPECT_EQ(SmOfArch("sm_80"), 80);
  EXPECT_EQ(SmOfArch("sm_120"), 120);
  EXPECT_EQ(SmOfArch("compute_90"), 0);
  EXPECT_EQ(SmOfArch("sm_"), 0);
  EXPECT_EQ(SmOfArch("sm_9x0"), 0);
  EXPECT_EQ(SmOfArch(""), 0);
  const std::vector<MathPath> portable = {MathPath::kMma, MathPath::kFma};
  const std::vector<MathPath> hopper = {MathPath::kMma, MathPath::kFma, MathPath::kWgmma};
  EXPECT_EQ(PathsFor(Mode::kPrefill, 90), hopper);
  EXPECT_EQ(PathsFor(Mode::kPrefill, 80), portable);
  EXPECT_EQ(PathsFor(Mode::kPrefill, 89), portable);
  EXPECT_EQ(PathsFor(Mode::kPrefill, 0), portable);  // no device known: today's paths
  EXPECT_EQ(PathsFor(Mode::kDecode, 90), hopper);  // decode_sm90 is searched on sm_90 by default
  EXPECT_EQ(PathsFor(Mode::kDecode, 80), portable);
  // An explicit list is kept as given, less what the device does not run, with the reason.
  const DevicePaths on80 = PathsOnDevice(Mode::kPrefill, {MathPath::kWgmma, MathPath::kMma}, "sm_80");
  EXPECT_EQ(on80.paths, std::vector<MathPath>{MathPath::kMma});
  ASSERT_EQ(on80.skipped.size(), 1u);
  EXPECT_EQ(on80.skipped[0], "path wgmma: the prefill_sm90 family does not run on sm_80 (it runs on sm_90 only)");
  const DevicePaths on90a = PathsOnDevice(Mode::kPrefill, {MathPath::kWgmma}, "sm_90a");
  EXPECT_EQ(on90a.paths, std::vector<MathPath>{MathPath::kWgmma});
  EXPECT_TRUE(on90a.skipped.empty());
  // Named explicitly, decode_sm90 is searched on sm_90 (and on nothing else).
  const DevicePaths decode = PathsOnDevice(Mode::kDecode, {MathPath::kWgmma}, "sm_90");
  EXPECT_EQ(decode.paths, std::vector<MathPath>{MathPath::kWgmma});
  EXPECT_TRUE(decode.skipped.empty());
  const DevicePaths decode80 = PathsOnDevice(Mode::kDecode, {MathPath::kWgmma}, "sm_80");
  EXPECT_TRUE(decode80.paths.empty());
  ASSERT_EQ(decode80.skipped.size(), 1u);
  EXPECT_NE(decode80.skipped[0].find("decode_sm90 family does not run on sm_80"), std::string::npos)
      << decode80.skipped[0];
}

// The tuner's default space for an sm_90 GPU has the wgmma family's prefill schedules (the
// 12-warp, 384-thread, ~190 KB ones included) and the device's default among them; for sm_80
// and sm_89 it has none, and asking for wgmma there explicitly says why it is left out.
TEST(StaticSpace, WgmmaPrefillOnSm90Only) {
  const Problem p = QwenPrefill();
  const Algorithm a;
  const TuneSpaceOptions dflt{{0}, false, {}};
  const StaticSpace h = BuildStaticSpace(p, a, LimitsFor(Device(9, 0, 227, 228)), dflt);
  EXPECT_GT(CountPath(h.variants, MathPath::kWgmma), 8u);
  EXPECT_GT(CountPath(h.variants, MathPath::kMma), 0u);
  EXPECT_GT(CountPath(h.variants, MathPath::kFma), 0u);
  EXPECT_TRUE(h.skipped.empty());
  EXPECT_EQ(h.not_on_device, 0);
  bool big_cta = false;
  for (const Variant& v : h.variants) {
    if (v.schedule().path != MathPath::kWgmma) continue;
    EXPECT_EQ(std::string(FamilyOf(v).name()), "prefill_sm90") << v.Key();
    big_cta = big_cta || (v.threads() == 384 && v.smem_bytes() > 160 * 1024);
  }
  EXPECT_TRUE(big_cta) << "a 12-warp CTA with the larger K/V rings must survive sm_90's limits";
  const std::string own = DeviceDefault(p, a, 90).Key();
  ASSERT_NE(own.find(".wgmma-"), std::string::npos) << own;
  EXPECT_TRUE(std::any_of(h.variants.begin(), h.variants.end(), [&](const Variant& v) { return v.Key() == own; }))
      << own << " (the runtime's default on sm_90) is not in the space";

  for (const DeviceInfo& dev : {Device(8, 0, 163, 164), Device(8, 9, 99, 100)}) {
    const DeviceLimits l = LimitsFor(dev);
    const StaticSpace s = BuildStaticSpace(p, a, l, dflt);
    EXPECT_EQ(CountPath(s.variants, MathPath::kWgmma), 0u) << l.arch;
    EXPECT_GT(CountPath(s.variants, MathPath::kMma), 0u) << l.arch;
    const StaticSpace asked = BuildStaticSpace(p, a, l, {{0}, false, {MathPath::kWgmma, MathPath::kMma}});
    EXPECT_EQ(CountPath(asked.variants, MathPath::kWgmma), 0u) << l.arch;
    EXPECT_GT(CountPath(asked.variants, MathPath::kMma), 0u) << l.arch;
    // Small wgmma CTAs would fit sm_80's shared memory: it is the device, not the limits, that rules them out.
    EXPECT_GT(asked.not_on_device, 0) << l.arch;
    ASSERT_EQ(asked.skipped.size(), 1u) << l.arch;
    EXPECT_NE(asked.skipped[0].find("prefill_sm90 family does not run on " + l.arch), std::string::npos)
        << asked.skipped[0];
  }
  // Decode on sm_90 adds decode_sm90's schedules (path wgmma) to mma and fma, and keeps all of
  // those: the tuner picks per bucket. Elsewhere decode is mma and fma only.
  const StaticSpace d = BuildStaticSpace(Qwen(), a, LimitsFor(Device(9, 0, 227, 228)), dflt);
  const StaticSpace d_old = BuildStaticSpace(Qwen(), a, LimitsFor(Device(9, 0, 227, 228)),
                                             {{0}, false, {MathPath::kMma, MathPath::kFma}});
  EXPECT_EQ(d.variants.size(), d_old.variants.size() + CountPath(d.variants, MathPath::kWgmma));
  EXPECT_GT(CountPath(d.variants, MathPath::kWgmma), 0u);
  for (const Variant& v : d.variants) {
    if (v.schedule().path != MathPath::kWgmma) continue;
    EXPECT_EQ(std::string(FamilyOf(v).name()), "decode_sm90") << v.Key();
  }
  const StaticSpace d80 = BuildStaticSpace(Qwen(), a, LimitsFor(Device(8, 0, 163, 164)), dflt);
  EXPECT_EQ(CountPath(d80.variants, MathPath::kWgmma), 0u);
}

// Registers and threads of a warp-specialized CTA: ptxas reports 168 registers under
// __launch_bounds__(384, 1) (setmaxnreg moves them between warpgroups later), which fills
// but fits sm_90's 64 Ki registers; 8 warps may take 255.
TEST(CompilePrune, WgmmaCtasFitSm90) {
  const Problem p = QwenPrefill();
  const Variant w12 = DeviceDefault(p, Algorithm{}, 90);
  ASSERT_EQ(w12.threads(), 384);
  const DeviceLimits l = LimitsFor(Device(9, 0, 227, 228));
  const std::string main = FamilyOf(w12).KernelNames().front();
  EXPECT_FALSE(CompilePruneReason(w12, {{main, 168, 0, 0, 0, 0}}, l));
  EXPECT_TRUE(CompilePruneReason(w12, {{main, 176, 0, 0, 0, 0}}, l));  // 176 x 384 > 64 Ki
  Schedule s8 = w12.schedule();
  s8.warps = 8;
  s8.pingpong = false;
  s8.block_m = 0;  // the family's canonical block_m for one consumer warpgroup
  const absl::StatusOr<Variant> w8 = Variant::Create(p, Algorithm{}, CanonicalSchedule(p, Algorithm{}, s8));
  ASSERT_TRUE(w8.ok()) << w8.status();
  EXPECT_FALSE(CompilePruneReason(*w8, {{main, 255, 0, 0, 0, 0}}, l));
}

// A wgmma variant compiles for sm_90a on an sm_90 GPU, under sm_90a's cache folder and name
// (Runtime::Load's), and is pruned, not compiled, for an sm_80.
TEST(NvrtcCompile, WgmmaCompilesForSm90aAndIsPrunedOnSm80) {
  const Variant v = DeviceDefault(QwenPrefill(), Algorithm{}, 90);
  const Variant mma = DeviceDefault(QwenPrefill(), Algorithm{}, 0);
  ASSERT_EQ(mma.schedule().path, MathPath::kMma);
  const std::string dir = std::string(PLX_BINARY_DIR) + "/search_compile_wgmma_test_cache";
  std::filesystem::remove_all(dir);
  const CompileTarget t = TargetFor(Device(9, 0, 227, 228), dir);
  EXPECT_EQ(t.arch, "sm_90");
  EXPECT_EQ(CompileArch(t, v), "sm_90a");
  EXPECT_EQ(CompileArch(t, mma), "sm_90");
  const std::string src = GenerateSource(v);
  const std::string name = ArtifactName(v, src, t);
  EXPECT_EQ(ArtifactPath(t, v, name), dir + "/sm_90a/" + name + ".cubin");
  // The name hashes sm_90a: the same as for a target that says sm_90a itself, unlike mma's.
  CompileTarget t90a = t;
  t90a.arch = "sm_90a";
  EXPECT_EQ(ArtifactName(v, src, t90a), name);
  EXPECT_NE(ArtifactName(mma, GenerateSource(mma), t90a), ArtifactName(mma, GenerateSource(mma), t));

  const CompileOutcome c = NvrtcCompileFn(t)({v});
  ASSERT_NE(c.kind, CompileOutcome::Kind::kFailed) << c.reason;
  EXPECT_FALSE(c.kernels.empty());
  if (c.kind == CompileOutcome::Kind::kKeep) {
    EXPECT_TRUE(std::filesystem::exists(ArtifactPath(t, v, name)));
  }

  const CompileTarget t80 = TargetFor(Device(8, 0, 163, 164), dir);
  const CompileOutcome p80 = NvrtcCompileFn(t80)({v});
  EXPECT_EQ(p80.kind, CompileOutcome::Kind::kPruned);
  EXPECT_NE(p80.reason.find("prefill_sm90 family does not run on sm_80"), std::string::npos) << p80.reason;
  EXPECT_TRUE(p80.kernels.empty());
  EXPECT_FALSE(std::filesystem::exists(dir + "/sm_80a"));
  EXPECT_FALSE(std::filesystem::exists(dir + "/sm_80"));
  std::filesystem::remove_all(dir);
}

// A large prefill on the H200: the wgmma family's default is estimated about 2.3x faster than
// the mma.sync default (measured: 892 vs 2073 us at B 4, 16 heads, L 4096, D 128), so a
// guided search measures it first; the fma path stays far behind both.
TEST(CostModel, WgmmaPrefillRanksAheadOfMmaSync) {
  const CostInputs c = CostInputsFor(Device(9, 0, 227, 228));
  Problem p = QwenPrefill();
  p.num_kv_heads = 16;
  const Algorithm a;
  const Variant wg = DeviceDefault(p, a, 90), mma = DeviceDefault(p, a, 0);
  ASSERT_EQ(wg.schedule().path, MathPath::kWgmma);
  const double t_wg = EstimatePrefillUs(wg, 4, 4096, 4096, c), t_mma = EstimatePrefillUs(mma, 4, 4096, 4096, c);
  EXPECT_LT(t_wg * 1.8, t_mma) << t_wg << " vs " << t_mma;
  EXPECT_GT(t_wg * 3.0, t_mma) << t_wg << " vs " << t_mma;
  // Within 25% of what was measured.
  EXPECT_NEAR(t_wg, 892, 0.25 * 892);
  EXPECT_NEAR(t_mma, 2073, 0.25 * 2073);
  Schedule fs = mma.schedule();
  fs.path = MathPath::kFma;
  if (absl::StatusOr<Variant> f = Variant::Create(p, a, CanonicalSchedule(p, a, fs)); f.ok()) {
    EXPECT_GT(EstimatePrefillUs(*f, 4, 4096, 4096, c), 5 * t_mma);
  }
  // The same order through the bucket, and among the whole sm_90 space the cheapest is wgmma.
  EXPECT_LT(EstimateUs(wg, PrefillBucketFor(4, 4096, 4096), c), EstimateUs(mma, PrefillBucketFor(4, 4096, 4096), c));
  const StaticSpace h = BuildStaticSpace(p, a, c.limits, {{0}, false, {}});
  const Variant* best = nullptr;
  for (const Variant& v : h.variants)
    if (!best || EstimatePrefillUs(v, 4, 4096, 4096, c) < EstimatePrefillUs(*best, 4, 4096, 4096, c)) best = &v;
  ASSERT_NE(best, nullptr);
  EXPECT_EQ(best->schedule().path, MathPath::kWgmma) << best->Key();
}

}  // namespace
}  // namespace parallax::search
