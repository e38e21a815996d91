// The benches' pure-CPU pieces: the prefill FLOP count (visible pairs of the causal-at-the-end
// mask, with and without a window) and the backward's, the input-set sizing (per mode, as the
// tuner asks for it), and the host inputs every family's
// reduced check draws (the same values for the same seed as before the shared harness).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <random>

#include "bench_for.h"    // search/src: white-box
#include "host_inputs.h"  // search/src: white-box
#include "parallax/search/backward_bench.h"
#include "parallax/search/decode_bench.h"
#include "parallax/search/prefill_bench.h"

namespace parallax::search {
namespace {

// Row by row, straight from the spec: row i sees key j iff j <= L-Q+i and (W == 0 or j > L-Q+i-W).
int64_t BruteForcePairs(int q, int l, int w) {
  int64_t n = 0;
  for (int i = 0; i < q; ++i)
    for (int j = 0; j < l; ++j) n += j <= l - q + i && (w == 0 || j > l - q + i - w);
  return n;
}

TEST(PrefillFlops, VisiblePairsByHand) {
  EXPECT_EQ(VisiblePairs(4, 4, 0), 10);  // triangle: 1 + 2 + 3 + 4
  EXPECT_EQ(VisiblePairs(2, 5, 0), 9);   // a chunk at the end: 4 + 5
  EXPECT_EQ(VisiblePairs(1, 7, 0), 7);   // one query sees every key
  EXPECT_EQ(VisiblePairs(4, 4, 2), 7);   // 1 + 2 + 2 + 2
  EXPECT_EQ(VisiblePairs(4, 4, 1), 4);   // the diagonal
  EXPECT_EQ(VisiblePairs(2, 5, 3), 6);   // 3 + 3
  EXPECT_EQ(VisiblePairs(4, 4, 4), 10);  // a window >= L masks nothing
  EXPECT_EQ(VisiblePairs(4, 4, 100), 10);
  EXPECT_EQ(VisiblePairs(0, 4, 0), 0);
}

TEST(PrefillFlops, VisiblePairsMatchTheMaskEverywhere) {
  for (int l = 1; l <= 40; ++l)
    for (int q = 1; q <= l; ++q)
      for (int w : {0, 1, 2, 3, 7, 16, 39, 64}) ASSERT_EQ(VisiblePairs(q, l, w), BruteForcePairs(q, l, w)) << q << " " << l << " " << w;
  // Long sequences stay exact in 64 bits: L(L+1)/2 for L = 2^20.
  EXPECT_EQ(VisiblePairs(1 << 20, 1 << 20, 0), (int64_t(1) << 19) * ((int64_t(1) << 20) + 1));
}

TEST(PrefillFlops, FourDPerPairPerQueryHead) {
  // B=2, Hq=3, D=64, Q=L=4: 2 * 3 * 10 pairs * 4 * 64.
  EXPECT_DOUBLE_EQ(PrefillFlops(2, 3, 64, 4, 4, 0), 2.0 * 3 * 10 * 4 * 64);
  PrefillShape s;
  s.problem.mode = Mode::kPrefill;
  s.problem.num_q_heads = 32;
  s.problem.num_kv_heads = 8;
  s.problem.head_dim = 128;
  s.batch = 1;
  s.seqlen_q = s.seqlen_k = 4096;
  // The usual "causal attention" count: 4 * B * Hq * D * L(L+1)/2.
  EXPECT_DOUBLE_EQ(PrefillFlops(s), 4.0 * 32 * 128 * (4096.0 * 4097 / 2));
  // Softmax and Parallax are credited alike (attention-equivalent FLOPs).
  PrefillShape soft = s;
  soft.algorithm.probe = Probe::kNone;
  EXPECT_DOUBLE_EQ(PrefillFlops(soft), PrefillFlops(s));
  s.window = 1024;
  s.problem.window = true;
  EXPECT_DOUBLE_EQ(PrefillFlops(s), 4.0 * 32 * 128 * double(VisiblePairs(4096, 4096, 1024)));
}

TEST(PrefillFlops, InputSetBytes) {
  PrefillShape s;
  s.problem.mode = Mode::kPrefill;
  s.problem.num_q_heads = 4;
  s.problem.num_kv_heads = 2;
  s.problem.head_dim = 64;
  s.batch = 2;
  s.seqlen_q = 8;
  s.seqlen_k = 16;
  // q and r: 2 x 8 x 4 rows, k and v: 2 x 16 x 2 rows, 64 x 2 bytes a row.
  EXPECT_DOUBLE_EQ(PrefillInputSetBytes(s), (2.0 * 64 + 2.0 * 64) * 64 * 2);
  s.algorithm.probe = Probe::kNone;  // no r
  EXPECT_DOUBLE_EQ(PrefillInputSetBytes(s), (64.0 + 2.0 * 64) * 64 * 2);
  BenchOptions o;
  EXPECT_EQ(InputSetsFor(PrefillInputSetBytes(s), 50e6, 80e9, o), o.max_sets);
}

// The backward is credited 2.5x its forward (FlashAttention's convention), alike for softmax
// and Parallax, and reads q, k, v, out, dout and lse per set (with a probe r, vbar, tbar too).
TEST(BackwardFlops, TwoAndAHalfForwardsAndTheSetsItReads) {
  BackwardShape s;
  s.problem.mode = Mode::kBackward;
  s.problem.num_q_heads = 4;
  s.problem.num_kv_heads = 2;
  s.problem.head_dim = 64;
  s.batch = 2;
  s.seqlen_q = 8;
  s.seqlen_k = 16;
  EXPECT_DOUBLE_EQ(BackwardFlops(s), 2.5 * PrefillFlops(2, 4, 64, 8, 16, 0));
  BackwardShape soft = s;
  soft.algorithm.probe = Probe::kNone;
  EXPECT_DOUBLE_EQ(BackwardFlops(soft), BackwardFlops(s));
  s.window = 3;
  s.problem.window = true;
  EXPECT_DOUBLE_EQ(BackwardFlops(s), 2.5 * 4.0 * 64 * 4 * 2 * double(VisiblePairs(8, 16, 3)));
  // q-like rows 2 x 8 x 4 = 64 (q, r, out, dout, vbar: 5 of them), k-like 2 x 16 x 2 = 64 (k, v),
  // 64 x 2 bytes a row; lse and tbar 4 bytes a q row.
  EXPECT_DOUBLE_EQ(BackwardInputSetBytes(s), (5.0 * 64 + 2.0 * 64) * 64 * 2 + 2.0 * 64 * 4);
  EXPECT_DOUBLE_EQ(BackwardInputSetBytes(soft), (3.0 * 64 + 2.0 * 64) * 64 * 2 + 1.0 * 64 * 4);
}

// What the tuner sizes its watchdog by follows the problem's mode, at the bucket's shape.
TEST(InputSets, BenchSetBytesPerMode) {
  Problem p;
  p.num_q_heads = 16;
  p.num_kv_heads = 8;
  const Algorithm a;
  const BucketShape chunk{2, 8192, 512};  // 2 x 512 queries at the end of 8192 keys
  p.mode = Mode::kBackward;
  EXPECT_DOUBLE_EQ(internal::BenchSetBytes(p, a, chunk), BackwardInputSetBytes(BackwardShape{p, a, 2, 512, 8192, 0}));
  p.mode = Mode::kPrefill;
  EXPECT_DOUBLE_EQ(internal::BenchSetBytes(p, a, chunk), PrefillInputSetBytes(PrefillShape{p, a, 2, 512, 8192, 0}));
  p.mode = Mode::kDecode;
  EXPECT_DOUBLE_EQ(internal::BenchSetBytes(p, a, chunk), InputSetBytes(BenchShape{p, a, 2, 8192}));
  p.mode = Mode::kBackward;  // a window's size is BenchWindow's, as prefill's
  p.window = true;
  EXPECT_DOUBLE_EQ(internal::BenchSetBytes(p, a, chunk),
                   BackwardInputSetBytes(BackwardShape{p, a, 2, 512, 8192, BenchWindow(p, 8192)}));
}

TEST(InputSets, RotateEnoughToDefeatL2WithinMemory) {
  BenchOptions o;  // 2 x L2, at most 64 sets, 60% of memory
  EXPECT_EQ(InputSetsFor(10e6, 50e6, 80e9, o), 10);    // 2 x 50 MB of 10 MB sets
  EXPECT_EQ(InputSetsFor(10e6, 1e6, 80e9, o), 1);      // one set already exceeds L2
  EXPECT_EQ(InputSetsFor(1e3, 50e6, 80e9, o), 64);     // capped
  EXPECT_EQ(InputSetsFor(10e6, 50e6, 35e6, o), 2);     // floor(0.6 x 35 / 10) fit
  EXPECT_EQ(InputSetsFor(10e6, 50e6, 10e6, o), 0);     // none fits: the bench says so
}

TEST(InputSets, DecodeSetBytesCountWholePagesAndR) {
  BenchShape s;
  s.problem.num_q_heads = 4;
  s.problem.num_kv_heads = 2;
  s.problem.head_dim = 64;
  s.batch = 2;
  s.seqlen = 100;
  // K and V: 2 x 100 x 2 rows; q and r: 2 x 4 rows; 64 x 2 bytes a row.
  EXPECT_DOUBLE_EQ(InputSetBytes(s), (2.0 * 400 + 2.0 * 8) * 64 * 2);
  s.problem.kv_layout = KvLayout::kPaged;
  s.problem.page_size = 16;  // 7 pages, 112 slots per sequence
  EXPECT_DOUBLE_EQ(InputSetBytes(s), (2.0 * 448 + 2.0 * 8) * 64 * 2);
  s.algorithm.probe = Probe::kNone;  // r is still made (and counted)
  EXPECT_DOUBLE_EQ(InputSetBytes(s), (2.0 * 448 + 2.0 * 8) * 64 * 2);
}

TEST(HostInputs, QrkvAreFourRowDrawsInOrderThenRounded) {
  std::mt19937_64 rng(42), want_rng(42);
  internal::HostQrkv h = internal::RandomQrkv(rng, 3, 5, 32, DType::kBF16);
  std::vector<double> q = internal::RandomRows(want_rng, 3, 32, true);
  std::vector<double> r = internal::RandomRows(want_rng, 3, 32, true);
  std::vector<double> k = internal::RandomRows(want_rng, 5, 32, true);
  std::vector<double> v = internal::RandomRows(want_rng, 5, 32, false);
  EXPECT_EQ(h.qh, internal::Quantise(q, DType::kBF16));
  EXPECT_EQ(h.rh, internal::Quantise(r, DType::kBF16));
  EXPECT_EQ(h.kh, internal::Quantise(k, DType::kBF16));
  EXPECT_EQ(h.vh, internal::Quantise(v, DType::kBF16));
  EXPECT_EQ(h.q, q);  // the rounded values the reference reads
  EXPECT_EQ(h.r, r);
  EXPECT_EQ(h.k, k);
  EXPECT_EQ(h.v, v);
  EXPECT_TRUE(rng == want_rng);  // what a family draws next (decode's page shuffle) is unchanged
}

TEST(HostInputs, RefFamilyFollowsTheAlgorithm) {
  Algorithm a;
  a.probe = Probe::kNone;
  a.affine = Affine::kAmplified;
  const ref::Family f = internal::RefFamilyOf(a, 7);
  EXPECT_EQ(f.probe, ref::RefProbe::kNone);
  EXPECT_EQ(f.affine, ref::RefAffine::kAmplified);
  EXPECT_EQ(f.window, 7);
  EXPECT_EQ(internal::RefFamilyOf(Algorithm{}, 0).probe, ref::RefProbe::kLearned);
}

}  // namespace
}  // namespace parallax::search
