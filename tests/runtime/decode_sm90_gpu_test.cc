// The sm_90a decode family (codegen/families/decode_sm90) against the float64 reference
// (label: gpu): batch 1, 3 and 32 over 1 to 16384 keys, MHA and GQA 4, multi-token decode
// (Tq 2..16), both split merges
// (the second kernel and the cluster merge through distributed shared memory) at several
// split counts, both probes and affine forms, both dtypes, head dims 64/128/256; K/V tiles
// arrive by TMA (PlxDecodeTmaParams, maps encoded at launch). Skips without a GPU and on
// devices other than sm_90 (the family's code is sm_90a).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <iterator>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gpu_harness.h"

namespace parallax::testing {
namespace {

// A schedule of the family beyond the problem: keys per tile, warps, stages, splits
// (0 = auto), cluster merge.
struct Sm90Schedule {
  int block_n, warps, stages, splits;
  bool cluster;
};
constexpr Sm90Schedule kSchedules[] = {
    {64, 4, 4, 0, false},  {64, 4, 4, 8, true},  {128, 8, 3, 16, true}, {64, 4, 3, 5, false},
    {64, 4, 4, 2, true},   {128, 4, 3, 4, true}, {64, 2, 2, 0, false},  {128, 8, 3, 8, false},
    {64, 4, 6, 8, true},  // a ring deeper than the other families take (MaxStages 8)
};

// The key of `s` for the case's problem, with as many heads per CTA and as deep a ring (down
// to 2 stages) as stay valid ("" when none does).
std::string Sm90Key(const DecodeCase& c, const Sm90Schedule& s) {
  Problem p;
  p.mode = Mode::kDecode; p.dtype = c.dtype; p.head_dim = c.head_dim;
  p.num_q_heads = c.hq; p.num_kv_heads = c.hkv; p.window = c.window > 0;
  p.kv_layout = c.page_size ? KvLayout::kPaged : KvLayout::kContiguous;
  p.page_size = c.page_size;
  p.queries = c.queries;
  const Algorithm a{c.learned ? Probe::kLearned : Probe::kNone, c.affine};
  Schedule sc;
  sc.path = MathPath::kWgmma; sc.block_n = s.block_n; sc.warps = s.warps; sc.stages = s.stages;
  sc.splits = s.splits; sc.fused_merge = s.cluster;
  for (sc.stages = s.stages; sc.stages >= 2; --sc.stages)
    for (int h = std::min(p.group_size(), 16 / p.queries); h >= 1; --h) {
      if (p.group_size() % h) continue;
      sc.heads_per_cta = h;
      if (auto v = Variant::Create(p, a, sc); v.ok()) return v->Key();
    }
  return "";
}

// Case i of a rotation: its dtype and head dim.
DecodeCase Rotated(int i) {
  DecodeCase c;
  c.dtype = i % 2 ? DType::kFP16 : DType::kBF16;
  c.head_dim = i % 5 == 1 ? 64 : i % 5 == 3 ? 256 : 128;
  return c;
}

// Appends c with schedule i of the rotation, or the first schedule where that one is invalid.
void AddRotated(std::vector<DecodeCase>& cases, DecodeCase c, int i) {
  c.key = Sm90Key(c, kSchedules[i % std::size(kSchedules)]);
  if (c.key.empty()) c.key = Sm90Key(c, kSchedules[0]);
  cases.push_back(std::move(c));
}

// Ragged lengths with the longest at L: sequence b has max(1, L - 37 b) keys (b > 0 shorter).
std::vector<int> Lengths(int batch, int L) {
  std::vector<int> out(batch);
  for (int b = 0; b < batch; ++b) out[b] = std::max(1, L - 37 * b);
  return out;
}

std::vector<DecodeCase> Cases() {
  std::vector<DecodeCase> cases;
  int i = 0;
  for (int batch : {1, 3, 32})
    for (int L : {1, 100, 512, 4097, 16384})
      for (int group : {1, 4}) {
        // B 32 x 16384 keys: 8.6 GB of float64 K/V on the host; one MHA case, one schedule.
        if (batch == 32 && L == 16384 && group == 4) continue;
        for (int j = 0; j < (batch == 32 && L == 16384 ? 1 : 3); ++j, ++i) {
          DecodeCase c = Rotated(i);
          if (batch == 32 && L >= 4097) c.head_dim = 128;
          c.hq = 8 * group; c.hkv = 8;
          c.batch = batch;
          c.seqlens = Lengths(batch, L);
          c.learned = i % 4 != 3;
          c.affine = i % 4 == 1 ? Affine::kAmplified : Affine::kPlain;
          c.window = i % 7 == 2 ? 300 : 0;
          c.r_scale = i % 3 == 2 ? 10.0 : 1.0;
          c.seed = 7000 + i;
          AddRotated(cases, c, i);
        }
      }
  // Paged caches: pages of 8 (a tile of 64 keys is 8 boxes), 16 and 64 keys, shuffled in the
  // pool with unused poisoned pages; lengths ending on a page and one key past it, windows
  // that start inside a box, GQA packing, both merges.
  for (int page : {8, 16, 64})
    for (int batch : {1, 3})
      for (int L : {1, 100, 512, 4097}) {
        DecodeCase c = Rotated(i);
        c.hq = i % 3 == 0 ? 8 : 32; c.hkv = 8;
        c.batch = batch;
        const int on_page = std::max(1, L / page / 2) * page;
        c.seqlens = batch == 1 ? std::vector<int>{L} : std::vector<int>{L, on_page, on_page + 1};
        c.page_size = page;
        c.learned = i % 4 != 3;
        c.affine = i % 4 == 1 ? Affine::kAmplified : Affine::kPlain;
        c.window = i % 3 == 1 ? 83 : 0;
        c.seed = 8000 + i;
        AddRotated(cases, c, i);
        ++i;
      }
  // Multi-token decode (Tq 2..16): every token of a head in one CTA, a per-row causal limit
  // at the sequence's end (and window start); sequences shorter than Tq (rows without keys),
  // equal to it, ending inside a tile's causal zone and on a page; GQA 1, 4 and 8 (as many
  // heads per CTA as fit 16 rows); both merges; pages of 8, 16 and 64.
  for (int tq : {2, 3, 4, 8, 16})
    for (int L : {1, 4, 100, 4097}) {
      DecodeCase c = Rotated(i);
      c.queries = tq;
      if (tq > 8 && c.head_dim == 256) c.head_dim = 128;  // head_dim 256 takes up to 8 tokens
      const int group = i % 3 == 0 ? 1 : i % 3 == 1 ? 4 : 8;
      c.hq = 4 * group; c.hkv = 4;
      c.batch = i % 2 ? 3 : 1;
      c.seqlens = c.batch == 1 ? std::vector<int>{L} : std::vector<int>{L, std::max(1, L / 2), tq};
      c.page_size = i % 4 == 1 ? 16 : i % 4 == 3 ? (i % 8 == 3 ? 8 : 64) : 0;
      c.learned = i % 4 != 2;
      c.affine = i % 6 == 1 ? Affine::kAmplified : Affine::kPlain;
      c.window = i % 5 == 2 ? 45 : 0;
      c.seed = 8500 + i;
      AddRotated(cases, c, i);
      ++i;
    }
  auto edge = [&](auto f) {
    DecodeCase c;
    c.seed = 9000 + cases.size();
    f(c);
    cases.push_back(c);
  };
  // Empty sequences and more splits than keys: empty splits must weigh nothing in either merge.
  edge([](DecodeCase& c) { c.seqlens = {0, 5}; c.key = Sm90Key(c, {64, 4, 4, 8, true}); });
  edge([](DecodeCase& c) { c.seqlens = {1, 1}; c.key = Sm90Key(c, {64, 4, 4, 16, true}); });
  edge([](DecodeCase& c) { c.seqlens = {1, 1}; c.key = Sm90Key(c, {64, 4, 4, 0, false}); c.num_splits = 4; });
  edge([](DecodeCase& c) { c.q_scale = 1e4; c.key = Sm90Key(c, {64, 4, 4, 4, true}); });  // |s1| ~ 1e4
  edge([](DecodeCase& c) { c.tau = 0.0; c.key = Sm90Key(c, {128, 8, 3, 8, true}); });    // uniform weights
  edge([](DecodeCase& c) { c.zero_r = true; c.key = Sm90Key(c, {64, 4, 4, 2, true}); }); // r = 0
  edge([](DecodeCase& c) {  // GQA 16 heads of a group packed in one CTA (2 MMA row tiles)
    c.hq = 64; c.hkv = 4; c.seqlens = {3000, 129}; c.key = Sm90Key(c, {64, 4, 4, 4, true});
  });
  edge([](DecodeCase& c) { c.affine = Affine::kAmplified; c.r_scale = 10; c.window = 7; c.key = Sm90Key(c, {64, 4, 4, 8, true}); });
  return cases;
}

// Whether this process has an sm_90 device to run the family on; why not otherwise.
Runtime* Sm90Runtime(std::string* why) {
  Runtime* rt = SharedRuntime(why);
  if (rt == nullptr) return nullptr;
  const DeviceInfo& d = rt->device();
  if (d.cc_major * 10 + d.cc_minor != 90) {
    *why = absl::StrCat(d.name, " is ", d.arch(), "; the decode_sm90 family runs on sm_90 only");
    return nullptr;
  }
  return rt;
}

class DecodeSm90Gpu : public ::testing::TestWithParam<DecodeCase> {
 protected:
  static void SetUpTestSuite() {  // compile every key up front, in parallel (NVRTC dominates)
    std::string why;
    Runtime* rt = Sm90Runtime(&why);
    if (!rt) return;
    const auto cases = Cases();
    std::atomic<size_t> next{0};
    std::vector<std::thread> pool;
    for (unsigned t = 0; t < std::max(2u, std::thread::hardware_concurrency()); ++t)
      pool.emplace_back([&] {
        for (size_t i; (i = next++) < cases.size();)
          if (absl::StatusOr<Variant> v = Variant::Parse(cases[i].key); v.ok()) (void)rt->Load(*v);
      });
    for (auto& th : pool) th.join();
  }
};

TEST_P(DecodeSm90Gpu, MatchesFloat64Reference) {
  std::string why;
  Runtime* rt = Sm90Runtime(&why);
  if (!rt) GTEST_SKIP() << why;
  const DecodeCase& c = GetParam();
  ASSERT_FALSE(c.key.empty()) << c.Name();
  absl::StatusOr<CaseResult> r = RunDecodeCase(*rt, c);
  ASSERT_TRUE(r.ok()) << c.key << ": " << r.status();
  EXPECT_EQ(r->variant, c.key);
  EXPECT_EQ(r->err.non_finite, 0) << r->variant;
  EXPECT_LE(r->ill_conditioned_rows, std::max<long>(2, static_cast<long>(r->out.size() / c.head_dim) / 20))
      << r->variant;
  EXPECT_LE(r->err.rel_frobenius, r->tolerance) << r->variant << " splits=" << r->num_splits;
  std::printf("[case] %s variant=%s splits=%d rel_fro=%.3e max_rel=%.3e\n", c.Name().c_str(), r->variant.c_str(),
              r->num_splits, r->err.rel_frobenius, r->err.max_rel_element);
}

INSTANTIATE_TEST_SUITE_P(Family, DecodeSm90Gpu, ::testing::ValuesIn(Cases()),
                         [](const auto& info) { return absl::StrCat(info.index, "_", info.param.Name()); });

// GQA 32/8 over three ragged sequences: the identity tests' case.
DecodeCase IdentityCase(std::vector<int> seqlens) {
  DecodeCase c;
  c.hq = 32; c.hkv = 8; c.batch = static_cast<int>(seqlens.size());
  c.seqlens = std::move(seqlens);
  return c;
}

// The cluster merge and the second kernel combine the same split partials: to rounding, the
// same output; and both agree with the portable decode family.
TEST(DecodeSm90GpuIdentity, BothMergesAndThePortableFamilyAgree) {
  std::string why;
  Runtime* rt = Sm90Runtime(&why);
  if (!rt) GTEST_SKIP() << why;
  DecodeCase c = IdentityCase({5000, 2500, 17});
  absl::StatusOr<CaseResult> portable = RunDecodeCase(*rt, c);
  ASSERT_TRUE(portable.ok()) << portable.status();
  for (int n : {2, 4, 8, 16}) {
    for (bool cluster : {false, true}) {
      c.key = Sm90Key(c, {64, 4, 4, n, cluster});
      absl::StatusOr<CaseResult> r = RunDecodeCase(*rt, c);
      ASSERT_TRUE(r.ok()) << c.key << ": " << r.status();
      EXPECT_EQ(r->num_splits, n) << c.key;
      EXPECT_LE(ref::Compare(r->out, portable->out).rel_frobenius, 4e-3) << c.key;
    }
  }
}

// The same keys contiguous and scattered over pages (of 16 and 64): the same tiles and
// splits, so the same output to rounding; pages of one key have no sm_90a key and decode
// on the portable family.
TEST(DecodeSm90GpuIdentity, PagedAndContiguousCachesAgree) {
  std::string why;
  Runtime* rt = Sm90Runtime(&why);
  if (!rt) GTEST_SKIP() << why;
  DecodeCase c = IdentityCase({5000, 2048, 17});
  for (const Sm90Schedule& s : {Sm90Schedule{64, 4, 4, 8, true}, Sm90Schedule{128, 4, 3, 0, false}}) {
    c.page_size = 0;
    c.key = Sm90Key(c, s);
    absl::StatusOr<CaseResult> contiguous = RunDecodeCase(*rt, c);
    ASSERT_TRUE(contiguous.ok()) << c.key << ": " << contiguous.status();
    for (int page : {16, 64}) {
      c.page_size = page;
      c.key = Sm90Key(c, s);
      absl::StatusOr<CaseResult> r = RunDecodeCase(*rt, c);
      ASSERT_TRUE(r.ok()) << c.key << ": " << r.status();
      EXPECT_LE(r->err.rel_frobenius, r->tolerance) << c.key;
      EXPECT_LE(ref::Compare(r->out, contiguous->out).rel_frobenius, 1e-6) << c.key;
    }
  }
  c.page_size = 1;
  EXPECT_EQ(Sm90Key(c, {64, 4, 4, 8, true}), "");
  c.key = "decode-bf16-d128-h32x8-paged1-nowin.learned-plain.wgmma-n64-w4-s4-split8-g4-cluster";
  absl::StatusOr<CaseResult> refused = RunDecodeCase(*rt, c);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("page_size=1"), std::string::npos) << refused.status();
  c.key = "";
  absl::StatusOr<CaseResult> portable = RunDecodeCase(*rt, c);
  ASSERT_TRUE(portable.ok()) << portable.status();
  EXPECT_EQ(portable->variant.find(".wgmma-"), std::string::npos) << portable->variant;
  EXPECT_LE(portable->err.rel_frobenius, portable->tolerance);
}

// A cluster merge's split count is its cluster's: a call asking for another count is refused.
TEST(DecodeSm90GpuIdentity, ACallCannotChangeAClusterSplitCount) {
  std::string why;
  Runtime* rt = Sm90Runtime(&why);
  if (!rt) GTEST_SKIP() << why;
  DecodeCase c;
  c.key = Sm90Key(c, {64, 4, 4, 4, true});
  c.num_splits = 3;
  absl::StatusOr<CaseResult> r = RunDecodeCase(*rt, c);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("merges its 4 splits inside a cluster"), std::string::npos) << r.status();
  c.num_splits = 4;
  r = RunDecodeCase(*rt, c);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_LE(r->err.rel_frobenius, r->tolerance);
}


// K/V that TMA cannot read (an unaligned cache): a named key is refused at plan time, and
// says why; the plan never reaches a launch, so the addresses are never dereferenced.
TEST(DecodeSm90GpuIdentity, TensorsTmaCannotReadAreRefusedAtPlanTime) {
  std::string why;
  Runtime* rt = Sm90Runtime(&why);
  if (!rt) GTEST_SKIP() << why;
  DecodeArgs a;
  a.dtype = DType::kBF16;
  a.batch = 2; a.num_q_heads = 8; a.num_kv_heads = 8; a.head_dim = 128;
  a.q = reinterpret_cast<void*>(0x10000); a.out = reinterpret_cast<void*>(0x50000);
  a.k = reinterpret_cast<void*>(0x30008); a.v = reinterpret_cast<void*>(0x40000);  // k 8-byte aligned
  a.seqlen = 100;
  a.q_stride_h = a.o_stride_h = a.k_stride_h = a.v_stride_h = 128;
  a.q_stride_b = a.o_stride_b = a.k_stride_1 = a.v_stride_1 = 8 * 128;
  a.k_stride_0 = a.v_stride_0 = 100 * 8 * 128;
  a.variant_key = "decode-bf16-d128-h8x8-contig-nowin.none-plain.wgmma-n64-w4-s4-splitauto-g1";
  absl::StatusOr<DecodePlan> plan = rt->PlanDecode(a);
  ASSERT_FALSE(plan.ok());
  EXPECT_NE(plan.status().message().find("k: base address is not 16-byte aligned"), std::string::npos) << plan.status();
  a.k = reinterpret_cast<void*>(0x30000);
  plan = rt->PlanDecode(a);
  EXPECT_TRUE(plan.ok()) << plan.status();
}

}  // namespace
}  // namespace parallax::testing
