// The Hopper prefill backward family (codegen/families/prefill_bwd_sm90): its keys (path
// wgmma, prefill_bwd's grammar), its refusals, that it is sm_90's default (prefill_bwd elsewhere), and
// generated sources that NVRTC compiles to sm_90a cubins without spills or serialized
// wgmmas, with their register counts printed. Needs libnvrtc, no GPU.
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "parallax/codegen/generator.h"
#include "parallax/codegen/kernel_family.h"
#include "parallax/codegen/space.h"
#include "parallax/codegen/variant.h"
#include "parallax/codegen/variant_json.h"
#include "parallax/runtime/nvrtc_compiler.h"

namespace parallax {
namespace {

Problem BwdProblem(int head_dim, DType dtype = DType::kBF16, bool window = false) {
  Problem p;
  p.mode = Mode::kBackward;
  p.dtype = dtype;
  p.head_dim = head_dim;
  p.num_q_heads = 16;
  p.num_kv_heads = 4;
  p.window = window;
  return p;
}

const KernelFamily& Hopper() {
  const KernelFamily* f = FindFamily(Mode::kBackward, MathPath::kWgmma);
  EXPECT_NE(f, nullptr);
  return *f;
}

// The family's own default, canonical (DefaultSchedule(p, a, 90) gives the same).
Schedule HopperDefault(const Problem& p, const Algorithm& a) { return CanonicalSchedule(p, a, Hopper().Default(p, a)); }

TEST(BackwardSm90Family, KeysRoundTripOnPathWgmma) {
  EXPECT_EQ(Hopper().name(), "prefill_bwd_sm90");
  EXPECT_STREQ(Hopper().ArchSuffix(), "a");
  EXPECT_TRUE(Hopper().RunsOn(90));
  EXPECT_FALSE(Hopper().RunsOn(80));
  EXPECT_FALSE(Hopper().RunsOn(100));
  const Problem p = BwdProblem(128);
  const Algorithm a{Probe::kLearned, Affine::kPlain};
  absl::StatusOr<Variant> v = Variant::Create(p, a, HopperDefault(p, a));
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->Key(), "bwd-bf16-d128-h16x4-contig-nowin.learned-plain.wgmma-m32-n128-w12-s2");
  EXPECT_EQ(FamilyOf(*v).name(), "prefill_bwd_sm90");
  absl::StatusOr<Variant> back = Variant::Parse(v->Key());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, *v);
  // JSON without key and hash: the fields alone rebuild the variant.
  nlohmann::json fields = ToJson(*v);
  EXPECT_EQ(fields["schedule"]["path"], "wgmma");
  fields.erase("key");
  fields.erase("hash");
  absl::StatusOr<Variant> from_json = VariantFromJson(fields);
  ASSERT_TRUE(from_json.ok()) << from_json.status();
  EXPECT_EQ(from_json->Key(), v->Key());
  // The atomic reduction has no token, as on path mma; one warpgroup is 64 keys.
  for (const char* key : {"bwd-fp16-d64-h8x8-contig-win.none-plain.wgmma-m64-n64-w4-s1",
                          "bwd-bf16-d256-h16x4-contig-nowin.learned-amplified.wgmma-m32-n64-w8-s1-bulk"}) {
    absl::StatusOr<Variant> r = Variant::Parse(key);
    ASSERT_TRUE(r.ok()) << key << ": " << r.status();
    EXPECT_EQ(r->Key(), key);
    EXPECT_EQ(FamilyOf(*r).name(), "prefill_bwd_sm90");
  }
  // Warp-specialized: warps 12 (a producer warpgroup feeding two), counted as prefill_sm90
  // counts its warps; no token of its own.
  for (const char* key : {"bwd-bf16-d128-h16x4-contig-nowin.learned-plain.wgmma-m32-n128-w12-s2",
                          "bwd-fp16-d64-h8x8-contig-win.none-plain.wgmma-m64-n128-w12-s3-bulk",
                          "bwd-bf16-d256-h16x4-contig-nowin.learned-amplified.wgmma-m32-n64-w12-s2"}) {
    absl::StatusOr<Variant> r = Variant::Parse(key);
    ASSERT_TRUE(r.ok()) << key << ": " << r.status();
    EXPECT_EQ(r->Key(), key);
    EXPECT_EQ(FamilyOf(*r).name(), "prefill_bwd_sm90");
    EXPECT_EQ(GetLaunchShape(*r).threads, 384);
    EXPECT_LE(GetLaunchShape(*r).smem_bytes, 227 * 1024);
  }
  absl::StatusOr<Variant> bad = Variant::Parse("bwd-bf16-d128-h16x4-contig-nowin.learned-plain.wgmma-m32-n128-w8-s2-pp");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("expected bulk or det"), std::string::npos) << bad.status();
}

// Registered before prefill_bwd (verified on an H200): sm_90 devices get it by default, others
// the portable family; it launches exactly as prefill_bwd does (the runtime's three kernels
// by name).
TEST(BackwardSm90Family, IsSm90sDefaultAndLaunchesLikeThePortableFamily) {
  EXPECT_EQ(DefaultFamily(Mode::kBackward, 90).name(), "prefill_bwd_sm90");
  EXPECT_EQ(DefaultFamily(Mode::kBackward, 89).name(), "prefill_bwd");
  EXPECT_EQ(DefaultFamily(Mode::kBackward, 0).name(), "prefill_bwd");
  const KernelFamily* mma = FindFamily(Mode::kBackward, MathPath::kMma);
  ASSERT_NE(mma, nullptr);
  EXPECT_EQ(Hopper().KernelNames(), mma->KernelNames());
  EXPECT_EQ(Hopper().abi(), KernelFamily::Abi::kPlain);
  const Problem p = BwdProblem(128);
  const Algorithm a{Probe::kLearned, Affine::kAmplified};
  absl::StatusOr<Variant> v = Variant::Create(p, a, HopperDefault(p, a));
  ASSERT_TRUE(v.ok()) << v.status();
  const LaunchShape shape = GetLaunchShape(*v);
  EXPECT_EQ(shape.threads, 384);  // a producer and two consumer warpgroups
  EXPECT_EQ(shape.merge_threads, 128);  // the per-row kernels: 4 warps, one row each
  EXPECT_LE(shape.smem_bytes, 227 * 1024);
  const Grid g = FamilyOf(*v).MainGrid(*v, /*batch=*/3, /*seqlen_k=*/130, 1);
  EXPECT_EQ(g.x, 2);  // 130 keys in blocks of 128
  EXPECT_EQ(g.y, 4);  // kv heads
  EXPECT_EQ(g.z, 3);
  const std::string src = GenerateSource(*v);
  for (const char* want : {"plx_bwd_wgmma_scores(float (&d)[16]", "plx_bwd_wgmma_acc(float (&d)[64]",
                           "plx_bwd_wgmma_dq(float (&d)[16]", "p, 1, 1, 1, 0;", "constexpr int kDSplit = 1;"})
    EXPECT_NE(src.find(want), std::string::npos) << want;
}

TEST(BackwardSm90Family, RefusalsNameTheFieldAndTheRule) {
  const Algorithm a{Probe::kLearned, Affine::kPlain};
  const Problem p = BwdProblem(128);
  Schedule s = HopperDefault(p, a);  // the synchronous kernel's rules first (two warpgroups)
  s.warps = 8;
  s.stages = 1;
  auto refused = [&](const Problem& pp, const Schedule& ss, const std::string& want) {
    absl::StatusOr<Variant> v = Variant::Create(pp, a, ss);
    ASSERT_FALSE(v.ok()) << v->Key();
    EXPECT_NE(v.status().message().find(want), std::string::npos) << v.status();
  };
  Problem paged = p;
  paged.kv_layout = KvLayout::kPaged;
  paged.page_size = 16;
  refused(paged, s, "kv_layout=paged: the backward reads contiguous K/V only");
  Schedule bad = s;
  bad.dq_reduce = Schedule::DqReduce::kDeterministic;
  refused(p, bad, "dq_reduce=det: the ordered (bit-reproducible) dQ reduction runs on path mma");
  bad = s;
  bad.block_n = 64;
  refused(p, bad, "block_n=64: must be 128: 64 keys per warpgroup at head_dim 128");
  bad = s;
  bad.warps = 16;
  bad.block_n = 256;
  refused(p, bad, "warps=16: must be 4 or 8 (one or two warpgroups, 64 keys each), or 12");
  // Warp-specialized (warps 12): two consumer warpgroups' keys, a ring of 2 or 3 query blocks.
  Schedule ws = s;
  ws.warps = 12;
  ws.stages = 2;
  EXPECT_TRUE(Variant::Create(p, a, ws).ok());
  bad = ws;
  bad.block_n = 192;
  refused(p, bad,
          "block_n=192: must be 128: 64 keys per warpgroup at head_dim 128 (the producer warpgroup computes none)");
  bad = ws;
  bad.stages = 1;
  refused(p, bad, "stages=1: must be 2 or 3 with a producer warpgroup");
  bad = ws;
  bad.block_m = 64;
  refused(p, bad, "block_m=64: with head_dim 128");
  bad = ws;
  bad.dq_reduce = Schedule::DqReduce::kDeterministic;
  refused(p, bad, "dq_reduce=det: the ordered (bit-reproducible) dQ reduction runs on path mma");
  bad = s;
  bad.block_m = 16;
  refused(p, bad, "block_m=16: must be 32 or 64");
  bad = s;
  bad.block_m = 64;  // 3 x 32 score registers + 128 of dK, dV
  refused(p, bad, "block_m=64: with head_dim 128");
  bad = s;
  bad.stages = 3;
  refused(p, bad, "stages=3: must be 1 or 2");
  // Head dim 256: two warpgroups per 64 keys; double-buffered Parallax rows do not fit.
  const Problem big = BwdProblem(256);
  Schedule wide = HopperDefault(big, a);
  EXPECT_EQ(wide.block_n, 64);
  EXPECT_EQ(wide.warps, 12);
  EXPECT_EQ(wide.stages, 2);
  EXPECT_TRUE(Variant::Create(big, a, wide).ok());
  wide.warps = 8;
  wide.stages = 1;
  EXPECT_TRUE(Variant::Create(big, a, wide).ok());
  wide.stages = 2;
  wide.dq_reduce = Schedule::DqReduce::kBulk;  // with the staged dQ rows, two query blocks do not fit
  refused(big, wide, "stages=2: needs");
  wide.dq_reduce = Schedule::DqReduce::kAtomic;
  wide.stages = 1;
  wide.warps = 4;
  wide.block_n = 32;
  refused(big, wide, "warps=4: must be 8 at head_dim above 128");
  // ... warp-specialized there: double-buffered fits with red.add, not with three blocks and
  // bulk rows.
  Schedule wide_ws = HopperDefault(big, a);
  wide_ws.warps = 12;
  wide_ws.stages = 2;
  EXPECT_TRUE(Variant::Create(big, a, wide_ws).ok());
  wide_ws.stages = 3;
  wide_ws.dq_reduce = Schedule::DqReduce::kBulk;
  refused(big, wide_ws, "stages=3: needs");
  // Softmax at head_dim 64: the wide block fits.
  const Problem small = BwdProblem(64);
  EXPECT_EQ(HopperDefault(small, Algorithm{}).block_m, 64);
  EXPECT_TRUE(Variant::Create(small, Algorithm{}, HopperDefault(small, Algorithm{})).ok());
}

TEST(BackwardSm90Family, TheSpaceIsSmallAndValid) {
  for (int d : {64, 128, 256}) {
    SpaceOptions o;
    o.paths = {MathPath::kWgmma};
    const std::vector<Variant> space = EnumerateSpace(BwdProblem(d), Algorithm{Probe::kLearned, Affine::kPlain}, o);
    EXPECT_GE(space.size(), 2u) << d;
    EXPECT_LE(space.size(), 24u) << d;
    std::set<int> block_m, reduce, warps;
    for (const Variant& v : space) {
      EXPECT_EQ(FamilyOf(v).name(), "prefill_bwd_sm90");
      block_m.insert(v.schedule().block_m);
      reduce.insert(static_cast<int>(v.schedule().dq_reduce));
      warps.insert(v.schedule().warps);
    }
    EXPECT_EQ(reduce, (std::set<int>{0, 1})) << d << ": atomic and bulk searched";
    EXPECT_TRUE(block_m.count(32)) << d;
    EXPECT_TRUE(warps.count(12)) << d << ": the warp-specialized schedules searched";
  }
}

// ---- NVRTC: sm_90a cubins that export the three kernels, without spills -----------------
struct Case {
  std::string key;
  bool must_not_spill;  // the defaults (kernel_check holds them to it at build time too)
};

std::vector<Case> CompileSet() {
  std::vector<Case> out;
  int rotate = 0;
  for (int d : {64, 128, 256})
    for (Algorithm a : {Algorithm{Probe::kNone, Affine::kPlain}, Algorithm{Probe::kLearned, Affine::kPlain},
                        Algorithm{Probe::kLearned, Affine::kAmplified}})
      for (bool window : {false, true}) {
        const Problem p = BwdProblem(d, rotate++ % 2 ? DType::kFP16 : DType::kBF16, window);
        absl::StatusOr<Variant> v = Variant::Create(p, a, HopperDefault(p, a));
        if (v.ok()) out.push_back({v->Key(), true});
      }
  // The other sides of the switches: one warpgroup, two stages, bulk / red.add, the other block_m.
  for (const char* key : {"bwd-bf16-d128-h16x4-contig-nowin.learned-plain.wgmma-m32-n64-w4-s1",
                          "bwd-fp16-d128-h16x4-contig-win.none-plain.wgmma-m32-n128-w8-s2-bulk",
                          "bwd-bf16-d64-h16x4-contig-nowin.learned-amplified.wgmma-m32-n128-w8-s2-bulk",
                          "bwd-bf16-d64-h16x4-contig-win.learned-plain.wgmma-m64-n64-w4-s2"})
    out.push_back({key, false});
  // The synchronous kernel (kernel_sync.cuh) the default until this change (2026-12-01): none may spill.
  for (const char* key : {"bwd-bf16-d128-h16x4-contig-nowin.learned-plain.wgmma-m32-n128-w8-s1",
                          "bwd-fp16-d256-h16x4-contig-win.learned-amplified.wgmma-m32-n64-w8-s1",
                          "bwd-bf16-d64-h16x4-contig-nowin.learned-plain.wgmma-m64-n128-w8-s1-bulk"})
    out.push_back({key, true});
  // Warp-specialized (kernel_ws.cuh) beyond the defaults (two slots, red.add): head dims 64,
  // 128, 256, probes, window, 16-bit types, three slots and bulk rows; none may spill --
  // setmaxnreg gives the producer 24 registers and the consumers 240 (ptxas reports the
  // launch's 168).
  for (const char* key : {"bwd-bf16-d128-h16x4-contig-nowin.learned-plain.wgmma-m32-n128-w12-s3",
                          "bwd-fp16-d128-h16x4-contig-win.learned-amplified.wgmma-m32-n128-w12-s3-bulk",
                          "bwd-bf16-d128-h16x4-contig-win.none-plain.wgmma-m32-n128-w12-s2-bulk",
                          "bwd-fp16-d128-h16x4-contig-nowin.none-plain.wgmma-m32-n128-w12-s3",
                          "bwd-bf16-d64-h16x4-contig-nowin.learned-plain.wgmma-m64-n128-w12-s2-bulk",
                          "bwd-fp16-d64-h16x4-contig-win.none-plain.wgmma-m64-n128-w12-s3",
                          "bwd-bf16-d64-h16x4-contig-win.learned-amplified.wgmma-m32-n128-w12-s3",
                          "bwd-bf16-d256-h16x4-contig-nowin.learned-amplified.wgmma-m32-n64-w12-s3",
                          "bwd-fp16-d256-h16x4-contig-win.none-plain.wgmma-m32-n64-w12-s2-bulk"})
    out.push_back({key, true});
  return out;
}

TEST(BackwardSm90Family, TheCompileSetCoversEveryMember) { EXPECT_EQ(CompileSet().size(), 3u * 3 * 2 + 4 + 3 + 9); }

class BackwardSm90Compile : public ::testing::TestWithParam<Case> {};

TEST_P(BackwardSm90Compile, CompilesForSm90aWithoutSpills) {
  const Case& c = GetParam();
  absl::StatusOr<Variant> v = Variant::Parse(c.key);
  ASSERT_TRUE(v.ok()) << v.status();
  const std::string source = GenerateSource(*v);
  CompileOptions o;
  o.arch = "sm_90a";
  o.warnings_as_errors = true;  // for CompileToPtx: any front-end message fails
  absl::StatusOr<std::string> ptx = CompileToPtx(source, c.key + ".cu", o);
  ASSERT_TRUE(ptx.ok()) << ptx.status();
  absl::StatusOr<CompileResult> r = CompileCuda(source, c.key + ".cu", o);
  ASSERT_TRUE(r.ok()) << r.status();
  // C7514: ptxas serialized the wgmmas (an accumulator touched while in flight).
  EXPECT_EQ(r->log.find("C7514"), std::string::npos) << r->log;
  // C7508: ptxas ignored setmaxnreg (the warp-specialized consumers would run on 168).
  EXPECT_EQ(r->log.find("C7508"), std::string::npos) << r->log;
  std::vector<std::string> names;
  for (const KernelResources& k : r->kernels) {
    names.push_back(k.name);
    std::printf("[resources] sm_90a %s %s: %d registers, spills %d/%d B\n", c.key.c_str(), k.name.c_str(),
                k.registers, k.spill_store_bytes, k.spill_load_bytes);
  }
  if (c.must_not_spill) {
    EXPECT_FALSE(r->has_spills()) << r->log;
  }
  for (const std::string& want : FamilyOf(*v).KernelNames())
    EXPECT_NE(std::find(names.begin(), names.end(), want), names.end()) << want;
}

INSTANTIATE_TEST_SUITE_P(Variants, BackwardSm90Compile, ::testing::ValuesIn(CompileSet()),
                         [](const ::testing::TestParamInfo<Case>& i) {
                           std::string n = i.param.key;
                           for (char& c : n)
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           return n;
                         });

}  // namespace
}  // namespace parallax
