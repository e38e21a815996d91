// Decode kernels against the float64 reference over the whole family (label: gpu).
#include <gtest/gtest.h>

#include <thread>

#include "absl/strings/str_cat.h"
#include "gpu_harness.h"
#include "parallax/parallax.hpp"

namespace parallax::testing {
namespace {

// The fma twin of the default schedule: 32 keys per warp, the largest valid head packing.
std::string FmaKey(const DecodeCase& c) {
  Problem p;
  p.mode = Mode::kDecode; p.dtype = c.dtype; p.head_dim = c.head_dim;
  p.num_q_heads = c.hq; p.num_kv_heads = c.hkv;
  p.kv_layout = c.page_size ? KvLayout::kPaged : KvLayout::kContiguous;
  p.page_size = c.page_size; p.window = c.window > 0;
  Algorithm a{c.learned ? Probe::kLearned : Probe::kNone, c.affine};
  Schedule s;
  s.path = MathPath::kFma; s.block_n = 128; s.warps = 4; s.stages = 2; s.splits = c.num_splits;
  for (int h = p.group_size(); h >= 1; --h) {
    if (p.group_size() % h) continue;
    s.heads_per_cta = h;
    if (auto v = Variant::Create(p, a, s); v.ok()) return v->Key();
  }
  return "";
}

// The default schedule with the split merge fused into the main kernel.
std::string FusedKey(const DecodeCase& c) {
  Problem p;
  p.mode = Mode::kDecode; p.dtype = c.dtype; p.head_dim = c.head_dim;
  p.num_q_heads = c.hq; p.num_kv_heads = c.hkv;
  p.kv_layout = c.page_size ? KvLayout::kPaged : KvLayout::kContiguous;
  p.page_size = c.page_size; p.window = c.window > 0;
  Algorithm a{c.learned ? Probe::kLearned : Probe::kNone, c.affine};
  Schedule s = CanonicalSchedule(p, a, DefaultDecodeSchedule(p, a));
  s.fused_merge = true;
  auto v = Variant::Create(p, a, s);
  return v.ok() ? v->Key() : "";
}

std::vector<DecodeCase> Cases() {
  std::vector<DecodeCase> cases;
  const std::pair<int, int> heads[] = {{4, 4}, {8, 4}, {8, 2}, {16, 2}, {16, 1}, {6, 2}};
  const int lens[] = {1, 17, 300, 1000, 64, 129, 2047};
  const int splits[] = {0, 1, 3, 7};
  const double rs[] = {1.0, 0.1, 10.0};
  int i = 0;
  for (DType t : {DType::kBF16, DType::kFP16})
    for (int d : {64, 128, 256})
      for (auto [hq, hkv] : heads)
        for (int fam = 0; fam < 4; ++fam, ++i) {
          DecodeCase c;
          c.dtype = t; c.head_dim = d; c.hq = hq; c.hkv = hkv;
          c.learned = fam < 2;
          c.affine = fam % 2 ? Affine::kAmplified : Affine::kPlain;
          c.batch = 2;
          c.seqlens = {lens[i % 7], lens[(i + 3) % 7]};
          c.page_size = i % 2 ? 16 : 0;
          c.window = i % 3 == 0 ? 50 : 0;
          c.num_splits = splits[i % 4];
          c.r_scale = rs[i % 3];
          c.seed = 1000 + i;
          cases.push_back(c);
          if (i % 3 == 1) {  // the scalar path on a third of the grid
            c.key = FmaKey(c);
            c.seed += 7;
            if (!c.key.empty()) cases.push_back(c);
          } else if (i % 3 == 2) {  // the fused split merge on another third
            c.key = FusedKey(c);
            c.seed += 11;
            if (!c.key.empty()) cases.push_back(c);
          }
        }
  auto edge = [&](auto f) {
    DecodeCase c;
    c.seed = 5000 + cases.size();
    f(c);
    cases.push_back(c);
  };
  edge([](DecodeCase& c) { c.seqlens = {0, 5}; });                                  // empty sequence
  edge([](DecodeCase& c) { c.seqlens = {1, 1}; c.num_splits = 4; });               // more splits than keys
  edge([](DecodeCase& c) { c.page_size = 16; c.seqlens = {32, 33}; });             // page boundary, just past
  edge([](DecodeCase& c) { c.page_size = 64; c.seqlens = {64, 65}; });
  edge([](DecodeCase& c) { c.page_size = 1; c.seqlens = {7, 20}; });
  edge([](DecodeCase& c) { c.q_scale = 1e4; });                                    // |s1| ~ 1e4
  edge([](DecodeCase& c) { c.window = 5000; c.seqlens = {900, 33}; });             // window >= L
  edge([](DecodeCase& c) { c.tau = 0.0; });                                        // uniform weights
  edge([](DecodeCase& c) { c.zero_r = true; });                                    // r = 0
  edge([](DecodeCase& c) { c.seqlens = {5000, 4097}; c.num_splits = 40; });        // many splits
  edge([](DecodeCase& c) { c.hq = 32; c.hkv = 8; c.batch = 5; c.seqlens = {3000, 1, 77, 1024, 4096}; });
  edge([](DecodeCase& c) { c.affine = Affine::kAmplified; c.r_scale = 10; c.window = 7; });
  return cases;
}

class DecodeGpu : public ::testing::TestWithParam<DecodeCase> {
 protected:
  static void SetUpTestSuite() {
    std::string why;
    Runtime* rt = SharedRuntime(&why);
    if (!rt) return;
    // Compile every case's variant up front, in parallel (NVRTC dominates otherwise).
    std::vector<std::string> keys;
    for (const DecodeCase& c : Cases()) keys.push_back(c.key);
    std::vector<std::thread> pool;
    std::atomic<size_t> next{0};
    const auto cases = Cases();
    for (unsigned t = 0; t < std::max(2u, std::thread::hardware_concurrency()); ++t)
      pool.emplace_back([&] {
        for (size_t i; (i = next++) < cases.size();) {
          const DecodeCase& c = cases[i];
          DecodeArgs a;
          a.dtype = c.dtype; a.batch = c.batch; a.num_q_heads = c.hq; a.num_kv_heads = c.hkv;
          a.head_dim = c.head_dim; a.q = a.k = a.v = a.out = reinterpret_cast<void*>(16);
          a.r = c.learned ? a.q : nullptr; a.window = c.window; a.affine = c.affine;
          a.variant_key = c.key; a.seqlen = 64; a.num_splits = 1;
          if (c.page_size) { a.block_table = static_cast<const int*>(a.q); a.seqlens = a.block_table; a.page_size = c.page_size; }
          if (auto plan = rt->PlanDecode(a); plan.ok()) (void)rt->Load(plan->variant);
        }
      });
    for (auto& th : pool) th.join();
  }
};

TEST_P(DecodeGpu, MatchesFloat64Reference) {
  std::string why;
  Runtime* rt = SharedRuntime(&why);
  if (!rt) GTEST_SKIP() << "no GPU: " << why;
  const DecodeCase& c = GetParam();
  absl::StatusOr<CaseResult> r = RunDecodeCase(*rt, c);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->err.non_finite, 0) << r->variant;
  // Ill-conditioned amplified rows are rare on these inputs; many would mean a real bug.
  EXPECT_LE(r->ill_conditioned_rows, std::max<long>(2, static_cast<long>(r->out.size() / c.head_dim) / 20))
      << r->variant;
  EXPECT_LE(r->err.rel_frobenius, r->tolerance) << r->variant << " splits=" << r->num_splits;
  RecordProperty("variant", r->variant);
  RecordProperty("rel_frobenius", absl::StrCat(r->err.rel_frobenius));
  RecordProperty("max_rel_element", absl::StrCat(r->err.max_rel_element));
  std::printf("[case] %s variant=%s splits=%d rel_fro=%.3e max_rel=%.3e ill_conditioned_rows=%ld\n", c.Name().c_str(),
              r->variant.c_str(), r->num_splits, r->err.rel_frobenius, r->err.max_rel_element, r->ill_conditioned_rows);
}

INSTANTIATE_TEST_SUITE_P(Family, DecodeGpu, ::testing::ValuesIn(Cases()),
                         [](const auto& info) { return absl::StrCat(info.index, "_", info.param.Name()); });

// Identities that must hold to rounding, checked kernel against kernel.
TEST(DecodeGpuIdentity, SplitCountDoesNotChangeTheResult) {
  std::string why;
  Runtime* rt = SharedRuntime(&why);
  if (!rt) GTEST_SKIP() << "no GPU: " << why;
  DecodeCase c;
  c.seqlens = {3000, 2500};
  std::vector<double> first;
  for (int s : {1, 2, 5, 17, 64, -5, -64}) {  // negative: the same count, fused merge
    c.num_splits = std::abs(s);
    c.key = s < 0 ? FusedKey(c) : "";
    absl::StatusOr<CaseResult> r = RunDecodeCase(*rt, c);
    ASSERT_TRUE(r.ok()) << r.status();
    if (first.empty()) { first = r->out; continue; }
    ref::ErrorStats e = ref::Compare(r->out, first);
    EXPECT_LE(e.rel_frobenius, 4e-3) << "splits=" << s << " " << r->variant;
  }
}

TEST(DecodeGpuIdentity, ZeroProbeEqualsSoftmax) {
  std::string why;
  Runtime* rt = SharedRuntime(&why);
  if (!rt) GTEST_SKIP() << "no GPU: " << why;
  DecodeCase c;
  c.zero_r = true;
  absl::StatusOr<CaseResult> learned = RunDecodeCase(*rt, c);
  c.learned = false;
  absl::StatusOr<CaseResult> none = RunDecodeCase(*rt, c);
  ASSERT_TRUE(learned.ok() && none.ok());
  EXPECT_LE(ref::Compare(learned->out, none->out).rel_frobenius, 1e-6);
}

// The C API's window spellings (parallax.h, "Windows") launch one kernel with one set of
// parameters: window = 50 and window_size (49, 0) / (49, -1) agree to the bit over 300 keys.
TEST(DecodeGpuIdentity, WindowSizeSpellingsAreBitIdentical) {
  std::string why;
  Runtime* rt = SharedRuntime(&why);
  if (!rt) GTEST_SKIP() << "no GPU: " << why;
  constexpr int64_t kB = 2, kHq = 8, kHkv = 2, kD = 128, kL = 300;
  std::mt19937_64 rng(4242);
  const size_t rows = kB * kHq * kD, cache = kB * kL * kHkv * kD;
  auto q = RandomHalves(rng, rows, DType::kBF16), r = RandomHalves(rng, rows, DType::kBF16);
  auto k = RandomHalves(rng, cache, DType::kBF16), v = RandomHalves(rng, cache, DType::kBF16);
  DeviceBuffer out(rows * 2);
  absl::Status s = CheckWindowSpellings(50, [&](const WindowSpelling& w) {
    plx_decode_args a = MakeDecodeArgs();  // a zero max_seqlen_k would be a hint of 0 keys
    a.q = MakeTensor(q->get(), PLX_BF16, {kB, kHq, kD});
    a.r = MakeTensor(r->get(), PLX_BF16, {kB, kHq, kD});
    a.k = MakeTensor(k->get(), PLX_BF16, {kB, kL, kHkv, kD});
    a.v = MakeTensor(v->get(), PLX_BF16, {kB, kL, kHkv, kD});
    a.out = MakeTensor(out.get(), PLX_BF16, {kB, kHq, kD});
    w.ApplyTo(a);
    return RunCApi(*rt, a, out, rows);
  });
  EXPECT_TRUE(s.ok()) << s;
}

}  // namespace
}  // namespace parallax::testing
