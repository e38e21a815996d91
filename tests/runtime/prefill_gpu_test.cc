// Causal prefill kernels against the float64 reference over the family (label: gpu).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <random>
#include <thread>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "gpu_harness.h"
#include "parallax/runtime/cuda_driver.h"
#include "parallax/parallax.hpp"

namespace parallax::testing {
namespace {

// Longer sequences than the family grid: many K/V tiles, so the ring wraps around several
// times, lengths off every tile size, GQA 8 and a chunk of queries late in a long context.
void AddLongCases(std::vector<PrefillCase>& cases) {
  const size_t base = cases.size();  // the five long cases are cases[base + 0..4]
  PrefillCase c;
  c.dtype = DType::kBF16; c.head_dim = 128; c.hq = 8; c.hkv = 1; c.batch = 1;
  c.seqlens_q = {777}; c.seqlens_k = {777}; c.seed = 9001;
  cases.push_back(c);
  c.learned = false; c.seed = 9002;
  cases.push_back(c);
  c = PrefillCase{};
  c.dtype = DType::kFP16; c.head_dim = 64; c.hq = 4; c.hkv = 4; c.batch = 2; c.varlen = true;
  c.seqlens_q = {1000, 129}; c.seqlens_k = {1000, 129}; c.window = 300; c.seed = 9003;
  cases.push_back(c);
  c = PrefillCase{};
  c.dtype = DType::kBF16; c.head_dim = 256; c.hq = 4; c.hkv = 2; c.batch = 1; c.affine = Affine::kAmplified;
  c.seqlens_q = {300}; c.seqlens_k = {901}; c.seed = 9004;  // chunked: 300 queries at the end of 901 keys
  cases.push_back(c);
  c = PrefillCase{};
  c.dtype = DType::kFP16; c.head_dim = 128; c.hq = 16; c.hkv = 2; c.batch = 2; c.r_scale = 10.0;
  c.seqlens_q = {513, 513}; c.seqlens_k = {513, 513}; c.seed = 9005;
  cases.push_back(c);
  // lse/tbar over many K/V tiles, and (inherited below) through ping-pong and persistence.
  for (size_t i = base; i < base + 4; ++i) cases[i].stats = true;
  // The sm_90a family's ping-pong schedule (consumer warpgroups taking turns), asked for by key.
  const auto pingpong = [&](PrefillCase c, const char* schedule) {
    Problem p;
    p.mode = Mode::kPrefill; p.dtype = c.dtype; p.head_dim = c.head_dim;
    p.num_q_heads = c.hq; p.num_kv_heads = c.hkv; p.window = c.window > 0;
    c.key = ProblemKey(p, Algorithm{c.learned ? Probe::kLearned : Probe::kNone, c.affine}) + ".wgmma-" + schedule;
    c.seed += 100;
    cases.push_back(c);
  };
  pingpong(cases[base + 0], "m64-n128-w12-s3-pp");   // 777 keys, GQA 8
  pingpong(cases[base + 1], "m128-n128-w12-s3-pp");  // the same, softmax
  pingpong(cases[base + 2], "m64-n64-w12-s4-pp");    // packed, window, fp16, D 64
  // Persistent CTAs walking the tiles (one wave of them): ragged packed sequences with tiles
  // past their ends, GQA 8 over many K/V tiles, softmax, a window.
  pingpong(cases[base + 0], "m64-n160-w12-s2-pp-pers");   // 777 keys, GQA 8
  pingpong(cases[base + 1], "m128-n128-w12-s3-pers");     // the same, softmax
  pingpong(cases[base + 2], "m64-n128-w12-s3-pp-pers");   // packed 1000 + 129, window, fp16, D 64
  pingpong(cases[base + 3], "m64-n64-w12-s2-pers");       // chunked 300 of 901, D 256, amplified
  pingpong(cases[base + 4], "m64-n160-w12-s2-pp-pers");   // fp16, GQA 8, 2 x 513
}

// Row statistics where the grid has none: rows that see no key (more queries than keys:
// lse -inf, tbar 0), through each family.
void AddStatsCases(std::vector<PrefillCase>& cases) {
  PrefillCase c;
  c.dtype = DType::kBF16; c.head_dim = 128; c.hq = 8; c.hkv = 2; c.batch = 2; c.varlen = true;
  c.seqlens_q = {40, 8}; c.seqlens_k = {20, 8}; c.stats = true; c.seed = 9100;
  cases.push_back(c);  // the device's default family (sm_90a on Hopper)
  c.key = MmaKey(c); c.seed = 9101;
  cases.push_back(c);
  c.key = FmaKey(c); c.seed = 9102;
  if (!c.key.empty()) cases.push_back(c);
  c = PrefillCase{};
  c.dtype = DType::kFP16; c.head_dim = 64; c.hq = 4; c.hkv = 1; c.batch = 2; c.learned = false;
  c.seqlens_q = {100, 100}; c.seqlens_k = {60, 60}; c.window = 16; c.stats = true; c.seed = 9103;
  cases.push_back(c);
  c.key = MmaKey(c); c.seed = 9104;
  cases.push_back(c);
}

// Extend over a paged cache (issue #13): ragged prefixes and chunks, a decode-like single
// token and a speculative 7, sequences ending exactly on and just past a page, page sizes 1
// to 1024, pages shuffled and a prefix shared between sequences, NaN in every unfilled slot.
// On Hopper the default is the sm_90a family for pages of 16 keys or more (TMA boxes per page
// piece), the portable family below that; the portable kernels are also asked for by key.
void AddPagedCases(std::vector<PrefillCase>& cases) {
  PrefillCase c;
  c.dtype = DType::kBF16; c.head_dim = 128; c.hq = 8; c.hkv = 2; c.batch = 3; c.varlen = true;
  c.seqlens_q = {1, 7, 100}; c.seqlens_k = {300, 64, 513}; c.page_size = 16; c.stats = true; c.seed = 9200;
  cases.push_back(c);
  c.key = MmaKey(c); c.seed = 9210;  // the portable family over the same pages
  cases.push_back(c);
  // The sm_90a family's persistent, three-stage schedule over the same pages, by key.
  c.key = ProblemKey(ProblemOf(c), Algorithm{Probe::kLearned, c.affine}) + ".wgmma-m64-n128-w12-s3-pp-pers";
  c.seed = 9211;
  cases.push_back(c);
  c.key.clear();
  c.page_size = 1; c.seed = 9201;  // token-granular pool
  cases.push_back(c);
  c.page_size = 64; c.key = FmaKey(c); c.seed = 9202;
  if (!c.key.empty()) cases.push_back(c);
  c = PrefillCase{};
  c.dtype = DType::kFP16; c.head_dim = 64; c.hq = 4; c.hkv = 4; c.batch = 2; c.learned = false;
  c.affine = Affine::kAmplified; c.window = 40;
  c.seqlens_q = {17, 17}; c.seqlens_k = {150, 200}; c.page_size = 64; c.seed = 9203;  // padded q, ragged keys
  cases.push_back(c);
  c = PrefillCase{};
  c.dtype = DType::kBF16; c.head_dim = 128; c.hq = 4; c.hkv = 1; c.batch = 1; c.affine = Affine::kAmplified;
  c.seqlens_q = {50}; c.seqlens_k = {2100}; c.page_size = 1024; c.seed = 9204;  // ends mid-page
  cases.push_back(c);
  c = PrefillCase{};
  c.dtype = DType::kFP16; c.head_dim = 256; c.hq = 6; c.hkv = 2; c.batch = 3; c.varlen = true; c.r_scale = 10.0;
  c.seqlens_q = {10, 20, 65}; c.seqlens_k = {96, 130, 65}; c.page_size = 16; c.shared_pages = 4; c.seed = 9205;
  cases.push_back(c);  // 64 shared keys; 96 on a page boundary, 65 just past one
  c.dtype = DType::kBF16; c.head_dim = 64; c.hq = 16; c.hkv = 1; c.window = 33; c.seed = 9206;
  c.key = MmaKey(c);
  cases.push_back(c);
  // Multi-token decode as plx_decode passes it on (DecodeAsExtend): padded q [B, Tq, Hq, D]
  // with Tq 4 and 8, ragged cache lengths, seqused_k = cache_seqlens.
  c = PrefillCase{};
  c.dtype = DType::kBF16; c.head_dim = 128; c.hq = 32; c.hkv = 8; c.batch = 3;
  c.seqlens_q = {4, 4, 4}; c.seqlens_k = {37, 64, 1000}; c.page_size = 16; c.seed = 9207;
  cases.push_back(c);
  c.seqlens_q = {8, 8, 8}; c.learned = false; c.page_size = 1; c.seed = 9208;
  cases.push_back(c);
}

// A seeded random sweep over extend (the hidden-input-style check): page sizes 1 to
// 1024, ragged or uniform (multi-token decode) query counts, ragged prefixes, shared prefix
// pages, windows, GQA with odd groups, every member, both dtypes and head dims, both paths.
void AddRandomExtendCases(std::vector<PrefillCase>& cases) {
  std::mt19937_64 rng(7777);
  const auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  const std::pair<int, int> heads[] = {{4, 4}, {8, 2}, {6, 2}, {16, 1}, {32, 8}, {5, 5}, {12, 4}};
  const int pages[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 1024};
  for (int i = 0; i < 24; ++i) {
    PrefillCase c;
    c.dtype = pick(0, 1) ? DType::kBF16 : DType::kFP16;
    c.head_dim = i % 6 == 5 ? 256 : (pick(0, 1) ? 64 : 128);
    std::tie(c.hq, c.hkv) = heads[pick(0, 6)];
    c.batch = pick(1, 4);
    c.page_size = pages[pick(0, 9)];
    c.learned = pick(0, 3) != 0;
    c.affine = pick(0, 2) == 0 ? Affine::kAmplified : Affine::kPlain;
    c.window = pick(0, 2) == 0 ? pick(1, 200) : 0;
    c.r_scale = (const double[]){0.1, 1.0, 10.0}[pick(0, 2)];
    const bool uniform_q = pick(0, 2) == 0;  // multi-token decode: Tq tokens for every sequence
    const int tq = pick(1, 16);
    c.varlen = !uniform_q;
    c.seqlens_q.clear();
    c.seqlens_k.clear();
    for (int b = 0; b < c.batch; ++b) {
      const int lk = pick(1, 600);
      c.seqlens_k.push_back(uniform_q ? std::max(lk, tq) : lk);
      c.seqlens_q.push_back(uniform_q ? tq : pick(1, std::min(lk, 80)));
    }
    const int shortest = *std::min_element(c.seqlens_k.begin(), c.seqlens_k.end());
    if (c.batch > 1 && pick(0, 2) == 0) c.shared_pages = std::min(3, shortest / c.page_size);
    c.stats = pick(0, 2) == 0;
    c.seed = 9300 + i;
    if (pick(0, 3) == 0) c.key = FmaKey(c);
    cases.push_back(c);
    // On Hopper the default takes pages of 16 and more to the sm_90a family: the portable
    // mma.sync kernels get the same case by key.
    if (c.key.empty() && c.page_size >= 16) {
      c.key = MmaKey(c);
      c.seed += 50;
      cases.push_back(c);
    }
  }
}

std::vector<PrefillCase> Cases() {
  std::vector<PrefillCase> cases;
  const std::pair<int, int> heads[] = {{4, 4}, {4, 2}, {8, 2}, {6, 2}, {16, 1}};
  int i = 0;
  for (DType t : {DType::kBF16, DType::kFP16})
    for (int d : {64, 128, 256})
      for (auto [hq, hkv] : heads)
        for (int fam = 0; fam < 4; ++fam, ++i) {
          if ((i % 2) && d == 256) continue;  // keep the D=256 share small: slowest reference
          PrefillCase c;
          c.dtype = t; c.head_dim = d; c.hq = hq; c.hkv = hkv;
          c.learned = fam < 2;
          c.affine = fam % 2 ? Affine::kAmplified : Affine::kPlain;
          c.window = i % 3 == 0 ? 40 : 0;
          c.r_scale = (i % 3 == 2) ? 10.0 : (i % 3 == 1 ? 0.1 : 1.0);
          switch (i % 4) {
            case 0: c.batch = 1; c.seqlens_q = {200}; c.seqlens_k = {200}; break;       // triangle
            case 1: c.batch = 2; c.varlen = true; c.seqlens_q = {70, 33}; c.seqlens_k = {70, 33}; break;
            case 2: c.batch = 2; c.seqlens_q = {17, 17}; c.seqlens_k = {150, 150}; break;  // chunked
            case 3: c.batch = 3; c.varlen = true; c.seqlens_q = {1, 64, 5}; c.seqlens_k = {90, 64, 130}; break;
          }
          c.seed = 2000 + i;
          // lse/tbar on two in five: i % 5 is independent of the layout, probe, window and
          // path choices above (all functions of i % 4 and i % 3), so every combination of
          // theirs is covered, and the keyed fma / mma cases below inherit it.
          c.stats = i % 5 < 2;
          cases.push_back(c);
          if (i % 3 == 1) {
            c.key = FmaKey(c);
            c.seed += 7;
            if (!c.key.empty()) cases.push_back(c);
          } else if (i % 3 == 2) {
            c.key = MmaKey(c);
            c.seed += 11;
            if (!c.key.empty()) cases.push_back(c);
          }
        }
  AddLongCases(cases);
  AddStatsCases(cases);
  AddPagedCases(cases);
  AddRandomExtendCases(cases);
  return cases;
}

class PrefillGpu : public ::testing::TestWithParam<PrefillCase> {
 protected:
  static void SetUpTestSuite() {
    std::string why;
    Runtime* rt = SharedRuntime(&why);
    if (!rt) return;
    const auto cases = Cases();
    std::atomic<size_t> next{0};
    std::vector<std::thread> pool;
    for (unsigned t = 0; t < std::max(2u, std::thread::hardware_concurrency()); ++t)
      pool.emplace_back([&] {
        for (size_t i; (i = next++) < cases.size();) {
          const PrefillCase& c = cases[i];
          PrefillArgs a;
          a.dtype = c.dtype; a.batch = c.batch; a.num_q_heads = c.hq; a.num_kv_heads = c.hkv;
          a.head_dim = c.head_dim; a.q = a.k = a.v = a.out = reinterpret_cast<void*>(16);
          a.r = c.learned ? a.q : nullptr; a.window = c.window; a.affine = c.affine; a.variant_key = c.key;
          // Plausible padded strides, so the plan is the one the case will get (TMA families
          // refuse strides they cannot read).
          const int64_t d = c.head_dim;
          a.q_stride_h = a.r_stride_h = a.o_stride_h = a.k_stride_h = a.v_stride_h = d;
          a.q_stride_l = a.r_stride_l = a.o_stride_l = c.hq * d;
          a.k_stride_l = a.v_stride_l = c.hkv * d;
          a.seqlen_q = a.seqlen_k = 64;
          if (auto v = rt->PlanPrefill(a); v.ok()) (void)rt->Load(*v);
        }
      });
    for (auto& th : pool) th.join();
  }
};

TEST_P(PrefillGpu, MatchesFloat64Reference) {
  std::string why;
  Runtime* rt = SharedRuntime(&why);
  if (!rt) GTEST_SKIP() << "no GPU: " << why;
  const PrefillCase& c = GetParam();
  absl::StatusOr<CaseResult> r = RunPrefillCase(*rt, c);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->err.non_finite, 0) << r->variant;
  // Ill-conditioned amplified rows are rare on these inputs; many would mean a real bug.
  EXPECT_LE(r->ill_conditioned_rows, std::max<long>(2, static_cast<long>(r->out.size() / c.head_dim) / 20))
      << r->variant;
  EXPECT_LE(r->err.rel_frobenius, r->tolerance) << r->variant;
  std::printf("[case] %s variant=%s rel_fro=%.3e max_rel=%.3e ill_conditioned_rows=%ld\n", c.Name().c_str(), r->variant.c_str(),
              r->err.rel_frobenius, r->err.max_rel_element, r->ill_conditioned_rows);
  if (c.stats) {
    const CaseResult::Stats& st = r->stats;
    EXPECT_GT(st.rows, 0);
    EXPECT_EQ(st.non_finite, 0) << r->variant << ": lse/tbar rows left unwritten (NaN poison) or NaN";
    EXPECT_EQ(st.wrong_exact, 0) << r->variant << ": rows without keys need -inf/0, probe none tbar 0";
    EXPECT_LE(st.lse_err, kStatsTolerance) << r->variant;
    EXPECT_LE(st.tbar_err, kStatsTolerance) << r->variant;
    std::printf("[stats] %s rows=%ld lse_err=%.3e tbar_err=%.3e\n", c.Name().c_str(), st.rows, st.lse_err,
                st.tbar_err);
  }
}

INSTANTIATE_TEST_SUITE_P(Family, PrefillGpu, ::testing::ValuesIn(Cases()),
                         [](const auto& info) { return absl::StrCat(info.index, "_", info.param.Name()); });

// The C API's window spellings (parallax.h, "Windows") launch one kernel with one set of
// parameters: window = 40 and window_size (39, 0) / (39, -1) agree to the bit, on a chunk of
// 96 queries at the end of 300 keys through the device's default family.
TEST(PrefillGpuIdentity, WindowSizeSpellingsAreBitIdentical) {
  std::string why;
  Runtime* rt = SharedRuntime(&why);
  if (!rt) GTEST_SKIP() << "no GPU: " << why;
  constexpr int64_t kB = 2, kLq = 96, kLk = 300, kHq = 8, kHkv = 2, kD = 64;
  std::mt19937_64 rng(4343);
  const size_t rows = kB * kLq * kHq * kD, keys = kB * kLk * kHkv * kD;
  auto q = RandomHalves(rng, rows, DType::kFP16), r = RandomHalves(rng, rows, DType::kFP16);
  auto k = RandomHalves(rng, keys, DType::kFP16), v = RandomHalves(rng, keys, DType::kFP16);
  DeviceBuffer out(rows * 2);
  absl::Status s = CheckWindowSpellings(40, [&](const WindowSpelling& w) {
    plx_prefill_args a{};  // zero: tensors absent, plain affine (_init is libparallax.so's, not linked here)
    a.struct_size = sizeof(a);
    a.qk_scale = -1.f;
    a.causal = 1;  // _init's default; zero would be non-causal
    a.q = MakeTensor(q->get(), PLX_FP16, {kB, kLq, kHq, kD});
    a.r = MakeTensor(r->get(), PLX_FP16, {kB, kLq, kHq, kD});
    a.k = MakeTensor(k->get(), PLX_FP16, {kB, kLk, kHkv, kD});
    a.v = MakeTensor(v->get(), PLX_FP16, {kB, kLk, kHkv, kD});
    a.out = MakeTensor(out.get(), PLX_FP16, {kB, kLq, kHq, kD});
    w.ApplyTo(a);
    return RunCApi(*rt, a, out, rows);
  });
  EXPECT_TRUE(s.ok()) << s;
}

// Extend over pages: a NaN inside a sequence's keys reaches the rows that see it (the kernels
// do not hide bad data), while NaN in the slots past seqused_k reaches no row.
TEST(PrefillGpuIdentity, NanInsideTheKeysShowsNanPastThemDoesNot) {
  std::string why;
  Runtime* rt = SharedRuntime(&why);
  if (!rt) GTEST_SKIP() << "no GPU: " << why;
  constexpr int kB = 2, kLq = 8, kHq = 4, kHkv = 2, kD = 64, kPs = 16, kPages = 4;  // 4 pages a sequence
  const int used[kB] = {40, 50};
  const size_t row = size_t(kHkv) * kD, pool = size_t(kB) * kPages * kPs * row;
  std::mt19937_64 rng(4545);
  std::vector<double> qd = RandomRows(rng, size_t(kB) * kLq * kHq, kD, true, 1.0);
  std::vector<double> kvd = RandomRows(rng, pool / kD, kD, true, 1.0);
  const std::vector<uint16_t> qh = Quantise(qd, DType::kBF16), kh = Quantise(kvd, DType::kBF16);
  std::vector<uint16_t> vh = kh;
  // Sequence 0 owns pages 0-3 (its keys in order), sequence 1 pages 4-7.
  std::vector<int> table = {0, 1, 2, 3, 4, 5, 6, 7};
  const uint16_t nan = 0x7fc1;
  std::vector<uint16_t> kp = kh;
  for (int key = used[0]; key < kPages * kPs; ++key) {  // past seqused_k: never read
    std::fill_n(vh.begin() + size_t(key) * row, row, nan);
    std::fill_n(kp.begin() + size_t(key) * row, row, nan);  // a NaN probe score, too
  }
  constexpr int kBadKey = 35;  // visible to sequence 0's query t iff 35 <= 40 - 8 + t, i.e. t >= 3
  vh[size_t(kBadKey) * row + 5] = nan;  // kv head 0, d 5: query heads 0 and 1
  DeviceBuffer q(qh.size() * 2), k(kh.size() * 2), v(vh.size() * 2), bt(table.size() * 4), lens(kB * 4);
  DeviceBuffer out(qh.size() * 2);
  q.Upload(qh.data(), qh.size() * 2);
  k.Upload(kp.data(), kp.size() * 2);
  v.Upload(vh.data(), vh.size() * 2);
  bt.Upload(table.data(), table.size() * 4);
  lens.Upload(used, sizeof(used));
  PrefillArgs a;
  a.dtype = DType::kBF16; a.batch = kB; a.num_q_heads = kHq; a.num_kv_heads = kHkv; a.head_dim = kD;
  a.q = q.get(); a.r = q.get(); a.k = k.get(); a.v = v.get(); a.out = out.get();
  a.q_stride_h = a.r_stride_h = a.o_stride_h = a.k_stride_h = a.v_stride_h = kD;
  a.q_stride_l = a.r_stride_l = a.o_stride_l = int64_t(kHq) * kD;
  a.q_stride_b = a.r_stride_b = a.o_stride_b = int64_t(kLq) * kHq * kD;
  a.k_stride_l = a.v_stride_l = int64_t(row);
  a.k_stride_b = a.v_stride_b = int64_t(kPs) * row;
  a.seqlen_q = kLq; a.seqlen_k = kPages * kPs;
  a.block_table = static_cast<const int*>(bt.get()); a.block_table_stride = kPages;
  a.seqused_k = static_cast<const int*>(lens.get()); a.page_size = kPs;
  a.total_k = kB * kPages;  // the pool's pages: lets the sm_90a family take the call
  // The device's default family (sm_90a on Hopper: stale slots arrive in a TMA box and are
  // cleared in shared memory), then the portable mma.sync family (never copies them).
  Problem pp;
  pp.mode = Mode::kPrefill; pp.head_dim = kD; pp.num_q_heads = kHq; pp.num_kv_heads = kHkv;
  pp.kv_layout = KvLayout::kPaged; pp.page_size = kPs;
  const std::string mma = Variant::Create(pp, Algorithm{}, DefaultSchedule(pp, Algorithm{}, 0))->Key();
  for (const std::string& key : {std::string(), mma}) {
  a.variant_key = key;
  out.Fill16(0x7fc2, qh.size());
  absl::StatusOr<Variant> var = rt->PlanPrefill(a);
  ASSERT_TRUE(var.ok()) << var.status();
  ASSERT_TRUE(rt->RunPrefill(*var, a, nullptr).ok());
  ASSERT_TRUE(cu::Check((*cu::Driver())->cuCtxSynchronize(), "prefill kernel").ok());
  std::vector<uint16_t> oh(qh.size());
  out.Download(oh.data(), oh.size() * 2);
  for (int b = 0; b < kB; ++b)
    for (int t = 0; t < kLq; ++t)
      for (int h = 0; h < kHq; ++h) {
        bool any_nan = false;
        for (int d = 0; d < kD; ++d) any_nan |= std::isnan(FromHalfBits(oh[((size_t(b) * kLq + t) * kHq + h) * kD + d], DType::kBF16));
        const bool reads_bad_v = b == 0 && h < kHq / kHkv;  // query heads on kv head 0
        if (reads_bad_v && t >= 3) {  // key 35 visible: the NaN must show
          EXPECT_TRUE(any_nan) << var->Key() << " t=" << t << " h=" << h;
        } else if (!reads_bad_v) {  // NaN only past seqused_k (or in another sequence): none may show
          EXPECT_FALSE(any_nan) << var->Key() << " b=" << b << " t=" << t << " h=" << h;
        }
        // (rows t < 3 of kv head 0 share key 35's tile: a masked weight of 0 times NaN may show)
      }
  }
}

}  // namespace
}  // namespace parallax::testing
