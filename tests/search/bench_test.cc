// The benches' pure-CPU pieces: the prefill FLOP count (visible pairs of the causal-at-the-end
// mask, with and without a window) and the input-set sizing.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>

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

}  // namespace
}  // namespace parallax::search
