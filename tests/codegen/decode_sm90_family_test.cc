// The Hopper decode family (codegen/families/decode_sm90): its keys (path wgmma, decode's
// grammar plus "-cluster"), its refusals, that it stays opt-in behind decode, its cluster
// launch shape, and generated sources that NVRTC compiles to sm_90a cubins without spills,
// with their register counts printed. Needs libnvrtc, no GPU.
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

Problem DecodeProblem(int head_dim, int q_heads = 8, int kv_heads = 8, DType dtype = DType::kBF16) {
  Problem p;
  p.mode = Mode::kDecode;
  p.dtype = dtype;
  p.head_dim = head_dim;
  p.num_q_heads = q_heads;
  p.num_kv_heads = kv_heads;
  return p;
}

const KernelFamily& Hopper() {
  const KernelFamily* f = FindFamily(Mode::kDecode, MathPath::kWgmma);
  EXPECT_NE(f, nullptr);
  return *f;
}

Schedule HopperDefault(const Problem& p, const Algorithm& a) { return CanonicalSchedule(p, a, Hopper().Default(p, a)); }

TEST(DecodeSm90Family, KeysRoundTripOnPathWgmma) {
  EXPECT_EQ(Hopper().name(), "decode_sm90");
  EXPECT_STREQ(Hopper().ArchSuffix(), "a");
  EXPECT_TRUE(Hopper().RunsOn(90));
  EXPECT_FALSE(Hopper().RunsOn(80));
  EXPECT_FALSE(Hopper().RunsOn(100));
  const Problem p = DecodeProblem(128);
  const Algorithm a{Probe::kLearned, Affine::kPlain};
  absl::StatusOr<Variant> v = Variant::Create(p, a, HopperDefault(p, a));
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->Key(), "decode-bf16-d128-h8x8-contig-nowin.learned-plain.wgmma-n64-w4-s4-splitauto-g1");
  EXPECT_EQ(FamilyOf(*v).name(), "decode_sm90");
  nlohmann::json fields = ToJson(*v);
  EXPECT_EQ(fields["schedule"]["path"], "wgmma");
  fields.erase("key");
  fields.erase("hash");
  absl::StatusOr<Variant> from_json = VariantFromJson(fields);
  ASSERT_TRUE(from_json.ok()) << from_json.status();
  EXPECT_EQ(from_json->Key(), v->Key());
  for (const char* key : {"decode-bf16-d128-h8x8-contig-nowin.none-plain.wgmma-n128-w8-s3-split8-g1-cluster",
                          "decode-fp16-d64-h32x8-contig-win.learned-amplified.wgmma-n64-w4-s4-split16-g4-cluster",
                          "decode-bf16-d256-h32x8-contig-nowin.learned-plain.wgmma-n64-w4-s2-split4-g2"}) {
    absl::StatusOr<Variant> r = Variant::Parse(key);
    ASSERT_TRUE(r.ok()) << key << ": " << r.status();
    EXPECT_EQ(r->Key(), key);
    EXPECT_EQ(FamilyOf(*r).name(), "decode_sm90");
    nlohmann::json j = ToJson(*r);
    j.erase("key");
    j.erase("hash");
    absl::StatusOr<Variant> back = VariantFromJson(j);
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(back->Key(), key);
  }
  absl::StatusOr<Variant> bad = Variant::Parse("decode-bf16-d128-h8x8-contig-nowin.none-plain.wgmma-n64-w4-s2-split4-g1-fused");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("wgmma-nN-wN-sN-splitN-gN[-cluster]"), std::string::npos) << bad.status();
}

// Multi-token decode (Problem::queries, key suffix "-qN" of the problem): only this family
// serves it; every token of a CTA's heads shares its K/V tiles, so heads x tokens <= 16.
TEST(DecodeSm90Family, MultiTokenKeysRoundTripAndPackTokensWithHeads) {
  Problem p = DecodeProblem(128, 32, 8);
  p.queries = 4;
  const Algorithm a{Probe::kLearned, Affine::kPlain};
  absl::StatusOr<Variant> v = Variant::Create(p, a, HopperDefault(p, a));
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->Key(), "decode-bf16-d128-h32x8-contig-nowin-q4.learned-plain.wgmma-n128-w4-s3-splitauto-g4");
  EXPECT_EQ(FamilyOf(*v).Tiling(*v).units, 16);
  EXPECT_NE(GenerateSource(*v).find("constexpr int kTokens = 4;"), std::string::npos);
  absl::StatusOr<Variant> back = Variant::Parse(v->Key());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->problem().queries, 4);
  nlohmann::json j = ToJson(*v);
  j.erase("key");
  j.erase("hash");
  absl::StatusOr<Variant> from_json = VariantFromJson(j);
  ASSERT_TRUE(from_json.ok()) << from_json.status();
  EXPECT_EQ(from_json->Key(), v->Key());
  p.queries = 16;  // one head of 16 tokens per CTA
  EXPECT_EQ(HopperDefault(p, a).heads_per_cta, 1);
  Schedule s = HopperDefault(p, a);
  s.heads_per_cta = 2;
  absl::StatusOr<Variant> wide = Variant::Create(p, a, s);
  ASSERT_FALSE(wide.ok());
  EXPECT_NE(wide.status().message().find("32 rows of q per CTA; at most 16"), std::string::npos) << wide.status();
  // The space packs no more than 16 rows.
  SpaceOptions o;
  o.paths = {MathPath::kWgmma};
  int n = 0;
  Hopper().ForEachCandidate(p, a, o, [&](const Schedule& c) {
    ++n;
    EXPECT_EQ(c.heads_per_cta, 1);
  });
  EXPECT_GT(n, 0);
}

TEST(DecodeSm90Family, MultiTokenRefusals) {
  // The portable decode takes one token; prefill and backward take no queries field.
  for (const char* key : {"decode-bf16-d128-h32x8-contig-nowin-q4.learned-plain.mma-n64-w4-s2-splitauto-g4",
                          "prefill-bf16-d128-h32x8-contig-nowin-q4.learned-plain.mma-m64-n64-w4-s2",
                          "decode-bf16-d128-h32x8-contig-nowin-q1.learned-plain.wgmma-n64-w4-s4-splitauto-g4",
                          "decode-bf16-d128-h32x8-contig-nowin-q17.learned-plain.wgmma-n64-w4-s4-splitauto-g1",
                          "decode-bf16-d128-h32x8-contig-nowin-t4.learned-plain.wgmma-n64-w4-s4-splitauto-g1"})
    EXPECT_FALSE(Variant::Parse(key).ok()) << key;
  absl::StatusOr<Variant> portable =
      Variant::Parse("decode-bf16-d128-h32x8-contig-nowin-q4.learned-plain.mma-n64-w4-s2-splitauto-g4");
  EXPECT_NE(portable.status().message().find("queries=4"), std::string::npos) << portable.status();
  absl::StatusOr<Variant> prefill =
      Variant::Parse("prefill-bf16-d128-h32x8-contig-nowin-q4.learned-plain.mma-m64-n64-w4-s2");
  EXPECT_NE(prefill.status().message().find("applies to decode only"), std::string::npos) << prefill.status();
  Problem p = DecodeProblem(128, 32, 8);
  p.queries = 4;
  EXPECT_FALSE(DefaultFamily(Mode::kDecode, 0).Serves(p));
  EXPECT_TRUE(Hopper().Serves(p));
  EXPECT_EQ(&DefaultFamily(p, 90), &Hopper());
  // Head dim 256 takes up to 8 tokens (one MMA row tile of q and r per CTA).
  p.head_dim = 256;
  p.queries = 8;
  EXPECT_TRUE(Hopper().Serves(p));
  p.queries = 9;
  EXPECT_FALSE(Hopper().Serves(p));
  absl::StatusOr<Variant> d256 =
      Variant::Parse("decode-bf16-d256-h32x8-contig-nowin-q16.learned-plain.wgmma-n64-w4-s2-splitauto-g1");
  ASSERT_FALSE(d256.ok());
  EXPECT_NE(d256.status().message().find("at most 8 query tokens at head_dim 256"), std::string::npos) << d256.status();
}

// Registered after decode: no device gets it by default until it is verified on a GPU.
TEST(DecodeSm90Family, IsOptInAndLaunchesItsClusterAsItSays) {
  EXPECT_EQ(DefaultFamily(Mode::kDecode, 90).name(), "decode");
  EXPECT_EQ(DefaultFamily(Mode::kDecode, 0).name(), "decode");
  const KernelFamily* mma = FindFamily(Mode::kDecode, MathPath::kMma);
  ASSERT_NE(mma, nullptr);
  EXPECT_EQ(Hopper().KernelNames(), mma->KernelNames());
  EXPECT_EQ(Hopper().abi(), KernelFamily::Abi::kDecodeTma);
  Problem paged = DecodeProblem(128);
  paged.kv_layout = KvLayout::kPaged;
  for (int page : {8, 16, 64, 1024}) {
    paged.page_size = page;
    EXPECT_TRUE(Hopper().Serves(paged)) << page;
  }
  for (int page : {1, 2, 4}) {  // a box per key or two: the portable decode gathers those
    paged.page_size = page;
    EXPECT_FALSE(Hopper().Serves(paged)) << page;
  }
  EXPECT_TRUE(Hopper().Serves(DecodeProblem(128)));

  absl::StatusOr<Variant> sep = Variant::Parse("decode-bf16-d128-h32x8-contig-nowin.learned-amplified.wgmma-n64-w4-s4-splitauto-g4");
  ASSERT_TRUE(sep.ok()) << sep.status();
  EXPECT_EQ(Hopper().Cluster(*sep).ctas(), 1);
  Grid g = Hopper().MainGrid(*sep, /*batch=*/3, 1, /*num_splits=*/5);
  EXPECT_EQ(g.x, 5);
  EXPECT_EQ(g.y, 8);
  EXPECT_EQ(g.z, 3);
  const LaunchShape shape = GetLaunchShape(*sep);
  EXPECT_EQ(shape.threads, 128);
  EXPECT_EQ(shape.merge_threads, 128);
  EXPECT_LE(shape.smem_bytes, 227 * 1024);

  absl::StatusOr<Variant> clu = Variant::Parse("decode-bf16-d128-h32x8-contig-nowin.learned-amplified.wgmma-n64-w4-s4-split8-g2-cluster");
  ASSERT_TRUE(clu.ok()) << clu.status();
  const Grid c = Hopper().Cluster(*clu);
  EXPECT_EQ(c.x, 8);
  EXPECT_EQ(c.y, 1);
  EXPECT_EQ(c.z, 1);
  g = Hopper().MainGrid(*clu, 3, 1, /*num_splits=*/8);
  EXPECT_EQ(g.x, 8);
  EXPECT_EQ(g.y, 16);  // 8 kv heads x 2 CTAs per group of 4
  // The one-launch twin of a fixed-split variant is its cluster-merge twin.
  absl::StatusOr<Variant> four = Variant::Parse("decode-bf16-d128-h32x8-contig-nowin.learned-amplified.wgmma-n64-w4-s4-split4-g4");
  ASSERT_TRUE(four.ok());
  std::optional<Variant> twin = OneLaunchTwin(*four);
  ASSERT_TRUE(twin.has_value());
  EXPECT_EQ(twin->Key(), four->Key() + "-cluster");
  EXPECT_FALSE(OneLaunchTwin(*sep).has_value());  // auto splits: no cluster of a known size
  const std::string src = GenerateSource(*clu);
  for (const char* want : {"constexpr bool kClusterMerge = true;", "constexpr int kClusterSplits = 8;",
                           "cp.async.bulk.tensor.4d.shared::cluster.global.mbarrier::complete_tx::bytes",
                           "plx_decode(const __grid_constant__ PlxDecodeTmaParams P)",
                           "mapa.shared::cluster.u32", "// family:  codegen/families/decode_sm90/"})
    EXPECT_NE(src.find(want), std::string::npos) << want;
  EXPECT_EQ(Hopper().Boxes(*clu).kv_rows, 64);
}

TEST(DecodeSm90Family, RefusalsNameTheFieldAndTheRule) {
  const Algorithm a{Probe::kLearned, Affine::kPlain};
  const Problem p = DecodeProblem(128);
  const Schedule s = HopperDefault(p, a);
  auto refused = [&](const Problem& pp, const Schedule& ss, const std::string& want) {
    absl::StatusOr<Variant> v = Variant::Create(pp, a, ss);
    ASSERT_FALSE(v.ok()) << v->Key();
    EXPECT_NE(v.status().message().find(want), std::string::npos) << v.status();
  };
  Problem paged = p;
  paged.kv_layout = KvLayout::kPaged;
  paged.page_size = 4;
  refused(paged, s, "page_size=4: the sm_90a decode family loads pages of at least 8 keys by TMA");
  Schedule bad = s;
  bad.warps = 1;
  refused(p, bad, "warps=1: must be 2, 4 or 8");
  bad = s;
  bad.stages = 1;
  refused(p, bad, "stages=1: must be at least 2");
  bad = s;
  bad.block_n = 32;
  refused(p, bad, "block_n=32: must be a multiple of 64");
  bad = s;
  bad.fused_merge = true;
  refused(p, bad, "splits=0: must be 2..16 with the cluster merge");
  bad.splits = 32;
  refused(p, bad, "splits=32: must be 2..16 with the cluster merge");
  bad = s;
  bad.block_n = 256;
  bad.stages = 4;
  refused(p, bad, "stages=4: ");
  bad = s;
  bad.heads_per_cta = 3;
  refused(DecodeProblem(128, 32, 8), bad, "heads_per_cta=3: must divide the GQA group size 4");
}

TEST(DecodeSm90Family, TheSpaceSearchesBothMergesAndOnlyOnPathWgmma) {
  const Problem p = DecodeProblem(128, 32, 8);
  const Algorithm a{Probe::kLearned, Affine::kPlain};
  SpaceOptions portable;
  for (const Variant& v : EnumerateSpace(p, a, portable)) EXPECT_EQ(FamilyOf(v).name(), "decode") << v.Key();
  SpaceOptions o;
  o.paths = {MathPath::kWgmma};
  const std::vector<Variant> space = EnumerateSpace(p, a, o);
  ASSERT_FALSE(space.empty());
  std::set<int> cluster_splits, stages, block_n;
  int separate = 0;
  for (const Variant& v : space) {
    EXPECT_EQ(FamilyOf(v).name(), "decode_sm90");
    if (v.schedule().fused_merge) cluster_splits.insert(v.schedule().splits);
    else ++separate;
    stages.insert(v.schedule().stages);
    block_n.insert(v.schedule().block_n);
  }
  EXPECT_GT(separate, 0);
  EXPECT_EQ(cluster_splits, (std::set<int>{2, 4, 8, 16}));
  EXPECT_TRUE(stages.count(4));
  EXPECT_TRUE(block_n.count(128));
}

// Every candidate once, even when the options repeat values or name fixed split counts that
// the cluster merge also takes (the strategy tests saw repeats with path wgmma).
TEST(DecodeSm90Family, CandidatesAreDistinctAndCanonical) {
  const Problem p = DecodeProblem(128, 32, 8);
  const Algorithm a{Probe::kLearned, Affine::kAmplified};
  SpaceOptions o;
  o.paths = {MathPath::kWgmma, MathPath::kWgmma};
  o.block_n = {64, 128, 64};
  o.warps = {4, 4, 8};
  o.stages = {2, 3, 3};
  o.splits = {0, 4, 4, 8, 16};
  std::set<std::string> schedules;
  int considered = 0;
  Hopper().ForEachCandidate(p, a, o, [&](const Schedule& s) {
    ++considered;
    EXPECT_TRUE(schedules.insert(Hopper().PrintSchedule(s)).second) << Hopper().PrintSchedule(s);
    EXPECT_EQ(Hopper().PrintSchedule(Hopper().Canonical(p, a, s)), Hopper().PrintSchedule(s));
  });
  EXPECT_EQ(considered, static_cast<int>(schedules.size()));
  EXPECT_GT(considered, 0);
  std::set<std::string> keys;
  for (const Variant& v : EnumerateSpace(p, a, o)) EXPECT_TRUE(keys.insert(v.Key()).second) << v.Key();
  EXPECT_FALSE(keys.empty());
}

// The header says what the kernels run: mma.sync (path wgmma only names the family), TMA,
// and the launch ABI of each kernel. The portable family keeps its path's line.
TEST(DecodeSm90Family, TheHeaderStatesItsMathAndAbi) {
  absl::StatusOr<Variant> v = Variant::Parse("decode-bf16-d128-h8x8-contig-nowin.learned-plain.wgmma-n64-w4-s4-splitauto-g1");
  ASSERT_TRUE(v.ok()) << v.status();
  const std::string src = GenerateSource(*v);
  const std::string head = src.substr(0, src.find("Self-contained"));
  EXPECT_NE(head.find("// math:    mma.sync m16n8k16 tensor cores; K/V by TMA into an mbarrier ring\n"), std::string::npos)
      << head;
  EXPECT_EQ(head.find("wgmma (sm_90a warpgroup MMA)"), std::string::npos) << head;
  EXPECT_NE(head.find("launch ABI: PlxDecodeTmaParams (main), PlxDecodeParams (merge)"), std::string::npos) << head;
  absl::StatusOr<Variant> clu = Variant::Parse("decode-bf16-d128-h8x8-contig-nowin.learned-plain.wgmma-n64-w4-s4-split8-g1-cluster");
  ASSERT_TRUE(clu.ok()) << clu.status();
  EXPECT_NE(GenerateSource(*clu).find("; splits merged through distributed shared memory\n"), std::string::npos);
  absl::StatusOr<Variant> mma = Variant::Parse("decode-bf16-d128-h8x8-contig-nowin.learned-plain.mma-n64-w4-s2-splitauto-g1");
  ASSERT_TRUE(mma.ok()) << mma.status();
  EXPECT_NE(GenerateSource(*mma).find("// math:    mma.sync m16n8k16 tensor cores\n"), std::string::npos);
}

// ---- NVRTC: sm_90a cubins that export both kernels, without spills -----------------------
std::vector<std::string> CompileSet() {
  std::vector<std::string> out;
  int rotate = 0;
  // Every head dim x probe/affine x GQA, alternating dtype, both merges (defaults and their
  // cluster twins), then the wide corners of the schedule.
  for (int d : {64, 128, 256})
    for (Algorithm a : {Algorithm{Probe::kNone, Affine::kPlain}, Algorithm{Probe::kLearned, Affine::kPlain},
                        Algorithm{Probe::kLearned, Affine::kAmplified}})
      for (int q_heads : {8, 32}) {
        const Problem p = DecodeProblem(d, q_heads, 8, rotate++ % 2 ? DType::kFP16 : DType::kBF16);
        Schedule s = HopperDefault(p, a);
        if (absl::StatusOr<Variant> v = Variant::Create(p, a, s); v.ok()) out.push_back(v->Key());
        s.fused_merge = true;
        s.splits = q_heads == 8 ? 16 : 4;
        // The published partial may cost the deepest ring a stage (head dim 256).
        for (; s.stages >= 2; --s.stages)
          if (absl::StatusOr<Variant> v = Variant::Create(p, a, s); v.ok()) {
            out.push_back(v->Key());
            break;
          }
      }
  for (const char* key : {"decode-bf16-d128-h8x8-contig-nowin.none-plain.wgmma-n128-w8-s3-split8-g1-cluster",
                          "decode-bf16-d128-h8x8-contig-nowin.learned-amplified.wgmma-n128-w4-s3-split8-g1-cluster",
                          "decode-fp16-d128-h32x8-contig-win.learned-plain.wgmma-n64-w2-s2-split2-g4-cluster",
                          "decode-bf16-d128-h64x4-contig-nowin.learned-plain.wgmma-n64-w4-s4-splitauto-g16",
                          "decode-bf16-d64-h32x8-contig-nowin.none-plain.wgmma-n256-w8-s2-split16-g4-cluster",
                          // paged: boxes of 8 keys (32 of them a tile), of 16, and of a whole tile
                          "decode-bf16-d64-h32x8-paged8-win.learned-plain.wgmma-n256-w8-s2-split4-g4-cluster",
                          "decode-fp16-d256-h32x8-paged16-nowin.learned-amplified.wgmma-n64-w4-s3-splitauto-g4",
                          "decode-bf16-d128-h16x8-paged64-win.none-plain.wgmma-n128-w4-s3-split8-g2-cluster",
                          "decode-bf16-d64-h8x8-paged256-nowin.learned-plain.wgmma-n64-w4-s6-splitauto-g1",
                          // multi-token decode: 16 rows of q (4 heads x 4 tokens; 16 tokens of
                          // one head), a window, pages, both merges
                          "decode-bf16-d128-h32x8-contig-nowin-q4.learned-plain.wgmma-n64-w4-s4-splitauto-g4",
                          "decode-fp16-d128-h8x8-paged16-win-q16.learned-amplified.wgmma-n64-w4-s4-split8-g1-cluster",
                          "decode-bf16-d256-h32x8-contig-win-q2.none-plain.wgmma-n64-w4-s2-split4-g4",
                          "decode-bf16-d64-h64x8-paged64-nowin-q8.learned-plain.wgmma-n128-w8-s3-split4-g2-cluster"})
    out.push_back(key);
  return out;
}

TEST(DecodeSm90Family, TheCompileSetCoversEveryMember) { EXPECT_GE(CompileSet().size(), 3u * 3 * 2 * 2); }

class DecodeSm90Compile : public ::testing::TestWithParam<std::string> {};

TEST_P(DecodeSm90Compile, CompilesForSm90aWithoutSpills) {
  const std::string& key = GetParam();
  absl::StatusOr<Variant> v = Variant::Parse(key);
  ASSERT_TRUE(v.ok()) << key << ": " << v.status();
  const std::string source = GenerateSource(*v);
  CompileOptions o;
  o.arch = "sm_90a";
  o.warnings_as_errors = true;
  absl::StatusOr<std::string> ptx = CompileToPtx(source, key + ".cu", o);
  ASSERT_TRUE(ptx.ok()) << ptx.status();
  absl::StatusOr<CompileResult> r = CompileCuda(source, key + ".cu", o);
  ASSERT_TRUE(r.ok()) << r.status();
  std::vector<std::string> names;
  for (const KernelResources& k : r->kernels) {
    names.push_back(k.name);
    std::printf("[resources] sm_90a %s %s: %d registers, spills %d/%d B\n", key.c_str(), k.name.c_str(),
                k.registers, k.spill_store_bytes, k.spill_load_bytes);
  }
  EXPECT_FALSE(r->has_spills()) << r->log;
  for (const std::string& want : FamilyOf(*v).KernelNames())
    EXPECT_NE(std::find(names.begin(), names.end(), want), names.end()) << want;
}

INSTANTIATE_TEST_SUITE_P(Variants, DecodeSm90Compile, ::testing::ValuesIn(CompileSet()),
                         [](const ::testing::TestParamInfo<std::string>& i) {
                           std::string n = i.param;
                           for (char& c : n)
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           return n;
                         });

}  // namespace
}  // namespace parallax
