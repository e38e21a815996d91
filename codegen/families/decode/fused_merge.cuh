// The fused split merge: with Schedule::fused_merge the last CTA of each head group combines
// every split itself, so a decode is one launch. Compiled in every decode variant (kFusedMerge
// gates the call), like plx_decode_merge is.
// Needs: decode_common.cuh (kMaxSplits), finalize.cuh; kSmemBytes, kUnits, kHeadDim, kThreads,
// kWarps, kNumQHeads, kLearned (generator).
// ---- phase: fused split merge (the last CTA of a head group combines all splits) --------
// Each CTA publishes its partials, then counts itself done; the one that completes the count
// resets the counter (so CUDA-graph replays start from zero again) and merges every split of
// its heads with the math of plx_decode_merge. The last CTA's merge must not serialise on L2
// latency (an online pass per element chains every load behind a branch on the previous
// split's statistics), so: one warp per head reduces the statistics of all splits (lanes over
// splits) to a max, a common centre and totals, and stages each split's weight and centre
// shift in the (by then idle) dynamic shared memory; then every thread sums kFusedCols
// columns over the splits, issuing the independent loads of 4 splits at a time before it
// adds them, so many are in flight together.
// The partials were written by other SMs: every load of them is ld.global.cg (from L2,
// never a stale L1 line), after the fence that follows the count.
// Dynamic smem while merging: totals [kUnits][4], column sums carried between chunks of
// splits [2][kUnits * kHeadDim] (the cross-warp merge buffer always holds these), and a chunk
// of per-split (weight, shift) pairs [kUnits][kFusedChunk][2]: every split, unless few warps
// at a small head dim meet many splits.
constexpr int kFusedChunkFit = (kSmemBytes / 4 - kUnits * 4 - kUnits * 2 * kHeadDim) / (kUnits * 2);
constexpr int kFusedChunk = kFusedChunkFit < kMaxSplits ? kFusedChunkFit : kMaxSplits;
static_assert(kFusedChunk >= 1, "the fused merge needs room for one split's weights");
constexpr int kFusedElems = kUnits * kHeadDim;  // output elements of this CTA
constexpr int kFusedCols =                      // columns per thread, summed together
    (kFusedElems + kThreads - 1) / kThreads < 4 ? (kFusedElems + kThreads - 1) / kThreads : 4;
__device__ __forceinline__ float plx_ldcg(const float* g) {
  float x;
  asm volatile("ld.global.cg.f32 %0, [%1];" : "=f"(x) : "l"(g));
  return x;
}
__device__ __forceinline__ float split_weight(float m_s, float m) {  // 0 for an empty split
  return m_s == -PLX_INF ? 0.f : plx_exp2(m_s - m);
}
__device__ __forceinline__ void fused_split_merge(const PlxDecodeParams& p, const float* rq, int b, int h0,
                                                  float* smem_f) {
  __shared__ int s_last;
  __threadfence();
  __syncthreads();  // also: every thread is done with the K/V ring and the q/r rows
  if (threadIdx.x == 0) {
    int* counter = p.counters + (long long)b * gridDim.y + blockIdx.y;
    s_last = atomicAdd(counter, 1) == p.num_splits - 1;
    if (s_last) *counter = 0;
  }
  __syncthreads();
  if (!s_last) return;
  __threadfence();
  const int n = p.num_splits;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const long long stride = (long long)p.batch * kNumQHeads;  // rows from one split to the next
  const long long row0 = (long long)b * kNumQHeads + h0;     // split 0, unit 0
  auto stats = [&](int u, int s, float (&x)[4]) {  // (m, d1, d2, c) of unit u in split s
    const float* g = p.part_stats + (row0 + u + s * stride) * 4;
#pragma unroll
    for (int j = 0; j < 4; ++j) x[j] = plx_ldcg(g + j);
  };
  float* s_tot = smem_f;                       // [kUnits][4]: m, d1, d2, c
  float* s_acc = s_tot + kUnits * 4;           // [2][kFusedElems]: O1, O2 column sums
  float* s_ws = s_acc + 2 * kFusedElems;       // [kUnits][kFusedChunk][2]: weight, c_s - c
  // Per unit: M = max m_s, w_s = exp2(m_s - M), d1 = sum w_s d1_s, centre c = sum w_s d1_s c_s
  // / d1, d2 = sum w_s (d2_s + (c_s - c) d1_s). (Statistics are re-read from L2 per pass:
  // holding them in registers across the passes made ptxas spill in small variants.)
  for (int u = warp; u < kUnits; u += kWarps) {
    auto for_splits = [&](auto&& f) {  // f(s, stats) for this lane's splits
      for (int s = lane; s < n; s += 32) {
        float x[4];
        stats(u, s, x);
        f(s, x);
      }
    };
    float m = -PLX_INF;
    for_splits([&](int, const float(&x)[4]) { m = fmaxf(m, x[0]); });
    m = plx_warp_max(m);
    float d1 = 0.f, dc = 0.f;
    for_splits([&](int, const float(&x)[4]) {
      const float w = split_weight(x[0], m);
      d1 += w * x[1];
      dc += w * x[1] * x[3];
    });
    d1 = plx_warp_sum(d1);
    dc = plx_warp_sum(dc);
    const float c = d1 > 0.f ? dc / d1 : 0.f;
    float d2 = 0.f;
    for_splits([&](int s, const float(&x)[4]) {
      const float w = split_weight(x[0], m);
      d2 += w * (x[2] + (x[3] - c) * x[1]);
      if (s < kFusedChunk) {  // the first chunk's weights
        s_ws[(u * kFusedChunk + s) * 2 + 0] = w;
        s_ws[(u * kFusedChunk + s) * 2 + 1] = x[3] - c;
      }
    });
    d2 = plx_warp_sum(d2);
    if (lane == 0) {
      s_tot[u * 4 + 0] = m;
      s_tot[u * 4 + 1] = d1;
      s_tot[u * 4 + 2] = d2;
      s_tot[u * 4 + 3] = c;
    }
  }
  // Column sums, a chunk of splits at a time (one chunk unless few warps at a small head dim
  // meet many splits). O2 moves to the common centre: O2_s + (c_s - c) O1_s.
  for (int s0 = 0; s0 < n; s0 += kFusedChunk) {
    const int ns = min(n - s0, kFusedChunk);
    if (s0 > 0) {
      __syncthreads();  // every thread is done with the previous chunk's weights
      for (int i = threadIdx.x; i < kUnits * ns; i += kThreads) {
        const int u = i / ns, s = i % ns;
        float x[4];
        stats(u, s0 + s, x);
        s_ws[(u * kFusedChunk + s) * 2 + 0] = split_weight(x[0], s_tot[u * 4 + 0]);
        s_ws[(u * kFusedChunk + s) * 2 + 1] = x[3] - s_tot[u * 4 + 3];
      }
    }
    __syncthreads();
    for (int i0 = threadIdx.x; i0 < kFusedElems; i0 += kFusedCols * kThreads) {
      float o1[kFusedCols], o2[kFusedCols];
      const float* o[kFusedCols];   // split s0 of the column
      const float* ws[kFusedCols];  // its unit's weights
#pragma unroll
      for (int e = 0; e < kFusedCols; ++e) {
        const int i = min(i0 + e * kThreads, kFusedElems - 1);  // past the end: a duplicate, not stored
        const int u = i / kHeadDim, d = i % kHeadDim;
        o[e] = p.part_o + (row0 + u + s0 * stride) * 2 * kHeadDim + d;
        ws[e] = s_ws + u * kFusedChunk * 2;
        o1[e] = s0 > 0 ? s_acc[i] : 0.f;
        o2[e] = s0 > 0 ? s_acc[kFusedElems + i] : 0.f;
      }
      for (int s = 0; s < ns; s += 4) {  // issue 4 splits x kFusedCols columns of loads, then sum
        float x1[4][kFusedCols], x2[4][kFusedCols];
#pragma unroll
        for (int j = 0; j < 4; ++j) {
#pragma unroll
          for (int e = 0; e < kFusedCols; ++e) {
            const float* os = o[e] + min(s + j, ns - 1) * stride * 2 * kHeadDim;
            x1[j][e] = plx_ldcg(os);
            x2[j][e] = kLearned ? plx_ldcg(os + kHeadDim) : 0.f;
          }
        }
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const int sj = min(s + j, ns - 1);  // past the chunk: a repeat of its last split, weight 0
#pragma unroll
          for (int e = 0; e < kFusedCols; ++e) {
            const float w = s + j < ns ? ws[e][2 * sj] : 0.f;
            o1[e] += w * x1[j][e];
            if (kLearned) o2[e] += w * (x2[j][e] + ws[e][2 * sj + 1] * x1[j][e]);
          }
        }
      }
#pragma unroll
      for (int e = 0; e < kFusedCols; ++e) {
        const int i = i0 + e * kThreads;
        if (i >= kFusedElems) break;
        if (s0 + ns < n) {  // more chunks to come; only this thread touches column i
          s_acc[i] = o1[e];
          s_acc[kFusedElems + i] = o2[e];
        } else {
          const int u = i / kHeadDim, d = i % kHeadDim;
          plx_e16* out = static_cast<plx_e16*>(p.out) + b * p.o_stride_b + (h0 + u) * p.o_stride_h;
          out[d] = plx_from_float(finalize(o1[e], o2[e], s_tot[u * 4 + 1], s_tot[u * 4 + 2],
                                           s_tot[u * 4 + 3], rq[u], p.eps));
        }
      }
    }
  }
}
