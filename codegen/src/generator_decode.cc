// Decode: one query token per sequence against its KV cache, split-KV across CTAs.
//
// CTA (split, kv head x head pack, batch) owns kHeadsPerCta query heads of one GQA group and
// one contiguous key range. Each tile of kBlockN keys is shared by all warps; warp w takes
// keys [w*kKeysPerWarp, (w+1)*kKeysPerWarp) of it, keeps its own online-softmax state, and
// the warps merge in shared memory at the end. With more than one split the CTA writes
// (m, d1, d2, O1, O2) partials and plx_decode_merge combines them like FlashAttention partials.
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "generator_internal.h"

namespace parallax::gen {
namespace {

std::string KvSourceDecode(const Variant& v) {
  if (v.problem().kv_layout == KvLayout::kPaged) {
    return R"cuda(
// Paged KV: key -> (block_table[b][key / kPageSize], key % kPageSize). The page of each
// row a thread copies is fetched one tile ahead (fetch), so the block-table load latency
// hides behind the current tile's math instead of stalling the copy issue.
struct KvSource {
  const plx_e16* k;  // already offset to this kv head
  const plx_e16* v;
  const int* pages;  // this sequence's block-table row
  long long k_page, k_slot, v_page, v_slot;
  struct Pages {
    int page[kRowsPerThread];
  };
  __device__ __forceinline__ void fetch(Pages& pg, int k0, int k_end) const {
#pragma unroll
    for (int j = 0; j < kRowsPerThread; ++j) {
      const int key = min(k0 + (int)threadIdx.x / kChunks + j * kRowsPerPass, k_end - 1);
      pg.page[j] = pages[key / kPageSize];
    }
  }
  __device__ __forceinline__ void rows(const Pages& pg, int j, int key, const plx_e16*& kr,
                                       const plx_e16*& vr) const {
    const int slot = key % kPageSize;
    kr = k + (long long)pg.page[j] * k_page + slot * k_slot;
    vr = v + (long long)pg.page[j] * v_page + slot * v_slot;
  }
};
__device__ __forceinline__ KvSource make_kv_source(const PlxDecodeParams& p, int b, int kvh) {
  KvSource s;
  s.k = static_cast<const plx_e16*>(p.k) + kvh * p.k_stride_h;
  s.v = static_cast<const plx_e16*>(p.v) + kvh * p.v_stride_h;
  s.pages = p.block_table + (long long)b * p.block_table_stride;
  s.k_page = p.k_stride_0; s.k_slot = p.k_stride_1;
  s.v_page = p.v_stride_0; s.v_slot = p.v_stride_1;
  return s;
}
)cuda";
  }
  return R"cuda(
// Contiguous KV: [B, Lmax, Hkv, D] with explicit strides.
struct KvSource {
  const plx_e16* k;  // already offset to this sequence and kv head
  const plx_e16* v;
  long long k_tok, v_tok;
  struct Pages {};  // nothing to look up ahead
  __device__ __forceinline__ void fetch(Pages&, int, int) const {}
  __device__ __forceinline__ void rows(const Pages&, int, int key, const plx_e16*& kr,
                                       const plx_e16*& vr) const {
    kr = k + key * k_tok;
    vr = v + key * v_tok;
  }
};
__device__ __forceinline__ KvSource make_kv_source(const PlxDecodeParams& p, int b, int kvh) {
  KvSource s;
  s.k = static_cast<const plx_e16*>(p.k) + b * p.k_stride_0 + kvh * p.k_stride_h;
  s.v = static_cast<const plx_e16*>(p.v) + b * p.v_stride_0 + kvh * p.v_stride_h;
  s.k_tok = p.k_stride_1;
  s.v_tok = p.v_stride_1;
  return s;
}
)cuda";
}

constexpr absl::string_view kDecodeCommon = R"cuda(
// Programmatic dependent launch (PDL): on sm_90+ the runtime launches plx_decode_merge
// with programmatic stream serialisation, so the merge grid may be scheduled as soon as
// every plx_decode CTA has triggered (or exited) instead of after plx_decode retires; its
// launch latency then hides behind the main kernel. griddepcontrol.wait blocks until the
// whole primary grid has completed and its memory is visible, so results are unchanged.
// It is not a tuner option: the wait makes it semantically identical to a plain launch, and
// nothing about it depends on the shape. Below sm_90 both compile to nothing.
__device__ __forceinline__ void plx_pdl_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
__device__ __forceinline__ void plx_pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// Test-only variants prove the tuner's isolation: a wild store or a spin that never ends.
__device__ __forceinline__ void test_fault() {
  if (kTestFault == 1 && threadIdx.x == 0) *reinterpret_cast<volatile int*>(16) = 1;
  if (kTestFault == 2)  // a side effect in the body: the loop cannot be assumed to end
    for (;;) asm volatile("nanosleep.u32 1000;" ::: "memory");
}

// Row `row` of the stacked [q; r] operand: query head `u` of this CTA, from q or r.
__device__ __forceinline__ const plx_e16* qr_row(const PlxDecodeParams& p, int b, int h0, int u,
                                                bool probe_row) {
  if (u >= kUnits) return nullptr;
  return probe_row ? static_cast<const plx_e16*>(p.r) + b * p.r_stride_b + (h0 + u) * p.r_stride_h
                   : static_cast<const plx_e16*>(p.q) + b * p.q_stride_b + (h0 + u) * p.q_stride_h;
}

// ---- phase: merge (warps of one CTA) and store -------------------------------------------
// merge_o [kWarps][kUnits][2][kHeadDim] and merge_st [kWarps][kUnits][4] hold each warp's
// O1, O2 and (m, d1, d2); every thread then combines one (unit, d) element over the warps.
__device__ __forceinline__ void merge_and_store(const PlxDecodeParams& p, const float* merge_o,
                                                const float* merge_st, const float* rq, int b,
                                                int h0, int split) {
  for (int i = threadIdx.x; i < kUnits * kHeadDim; i += kThreads) {
    const int u = i / kHeadDim, d = i % kHeadDim;
    const Merged r = merge_partials(kWarps, [&](int w) {
      const float* st = merge_st + (w * kUnits + u) * 4;
      const float* o = merge_o + (w * kUnits + u) * 2 * kHeadDim;
      return Partial{st[0], st[1], st[2], st[3], o[d], kLearned ? o[kHeadDim + d] : 0.f};
    });
    const int h = h0 + u;
    if (p.num_splits == 1) {
      plx_e16* out = static_cast<plx_e16*>(p.out) + b * p.o_stride_b + h * p.o_stride_h;
      out[d] = plx_from_float(finalize(r.o1, r.o2, r.d1, r.d2, r.c, rq[u], p.eps));
    } else {
      const long long row = ((long long)split * p.batch + b) * kNumQHeads + h;
      p.part_o[row * 2 * kHeadDim + d] = r.o1;
      if (kLearned) p.part_o[row * 2 * kHeadDim + kHeadDim + d] = r.o2;
      if (d == 0) {
        p.part_stats[row * 4 + 0] = r.m;
        p.part_stats[row * 4 + 1] = r.d1;
        p.part_stats[row * 4 + 2] = r.d2;
        p.part_stats[row * 4 + 3] = r.c;
      }
    }
  }
}

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
constexpr int kMaxSplits = 256;  // the runtime's bound on num_splits
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

// The split's key range: the visible keys [start, L) divided evenly, tile-aligned.
__device__ __forceinline__ void split_range(const PlxDecodeParams& p, int b, int split,
                                            int& k_begin, int& k_end) {
  const int len = p.seqlens ? p.seqlens[b] : p.seqlen;
  const int start = (kWindow && p.window > 0 && len > p.window) ? len - p.window : 0;
  const int per_split = (len - start + p.num_splits - 1) / p.num_splits;
  const int per = (per_split + kBlockN - 1) / kBlockN * kBlockN;
  k_begin = start + split * per;
  k_end = min(len, k_begin + per);
}
)cuda";

// The split merge kernel is the same for both math paths.
constexpr absl::string_view kDecodeMerge = R"cuda(
// ---- split merge: combine num_splits partials of one (batch, head) ----------------------
// Stage the per-split statistics once in shared memory (one weight and centre shift per
// split), then every thread sums its head-dim columns over the splits with independent loads.
extern "C" __global__ void __launch_bounds__(kMergeThreads) plx_decode_merge(const PlxDecodeParams p) {
  const int h = blockIdx.x, b = blockIdx.y;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  plx_pdl_wait();  // before any read of the partials plx_decode writes (no-op below sm_90)
  __shared__ float s_m[kMaxSplits], s_d1[kMaxSplits], s_d2[kMaxSplits], s_c[kMaxSplits];
  __shared__ float s_red[kMergeThreads / 32];
  __shared__ float s_tot[4];  // d1, d2, c, r.q
  const long long stride = (long long)p.batch * kNumQHeads;
  const long long row0 = (long long)b * kNumQHeads + h;
  const int n = min(p.num_splits, kMaxSplits);
  for (int s = threadIdx.x; s < n; s += kMergeThreads) {
    const float* st = p.part_stats + (row0 + s * stride) * 4;
    s_m[s] = st[0];
    s_d1[s] = st[1];
    s_d2[s] = st[2];
    s_c[s] = st[3];
  }
  float rq_part = 0.f;
  if (kLearned && kAmplified) {  // r.q, needed by the amplified affine form
    const plx_e16* q = static_cast<const plx_e16*>(p.q) + b * p.q_stride_b + h * p.q_stride_h;
    const plx_e16* r = static_cast<const plx_e16*>(p.r) + b * p.r_stride_b + h * p.r_stride_h;
    for (int d = threadIdx.x; d < kHeadDim; d += kMergeThreads)
      rq_part += plx_to_float(q[d]) * plx_to_float(r[d]);
    rq_part = plx_warp_sum(rq_part);
    if (lane == 0) s_red[warp] = rq_part;
  }
  __syncthreads();
  if (warp == 0) {  // weights: s_m becomes exp2(m_s - M); totals and the common centre
    float m = -PLX_INF;
    for (int s = lane; s < n; s += 32) m = fmaxf(m, s_m[s]);
    m = plx_warp_max(m);
    float d1 = 0.f, dc = 0.f;
    for (int s = lane; s < n; s += 32) {
      const float w = s_m[s] == -PLX_INF ? 0.f : plx_exp2(s_m[s] - m);
      s_m[s] = w;
      d1 += w * s_d1[s];
      dc += w * s_d1[s] * s_c[s];
    }
    d1 = plx_warp_sum(d1);
    dc = plx_warp_sum(dc);
    const float c = d1 > 0.f ? dc / d1 : 0.f;
    float d2 = 0.f;
    for (int s = lane; s < n; s += 32) d2 += s_m[s] * (s_d2[s] + (s_c[s] - c) * s_d1[s]);
    d2 = plx_warp_sum(d2);
    if (lane == 0) {
      float rq = 0.f;
      if (kLearned && kAmplified)
#pragma unroll
        for (int w = 0; w < kMergeThreads / 32; ++w) rq += s_red[w];
      s_tot[0] = d1;
      s_tot[1] = d2;
      s_tot[2] = c;
      s_tot[3] = rq;
    }
  }
  __syncthreads();
  const float c = s_tot[2];
  plx_e16* out = static_cast<plx_e16*>(p.out) + b * p.o_stride_b + h * p.o_stride_h;
  for (int d = threadIdx.x; d < kHeadDim; d += kMergeThreads) {
    float o1 = 0.f, o2 = 0.f;
#pragma unroll 4
    for (int s = 0; s < n; ++s) {
      const float w = s_m[s];
      const float* o = p.part_o + (row0 + s * stride) * 2 * kHeadDim;
      const float x1 = o[d];
      o1 += w * x1;
      if (kLearned) o2 += w * (o[kHeadDim + d] + (s_c[s] - c) * x1);
    }
    out[d] = plx_from_float(finalize(o1, o2, s_tot[0], s_tot[1], c, s_tot[3], p.eps));
  }
}
)cuda";

constexpr absl::string_view kDecodeMma = R"cuda(
// ---- the decode kernel (mma.sync path) ---------------------------------------------------
extern "C" __global__ void __launch_bounds__(kThreads) plx_decode(const PlxDecodeParams p) {
  extern __shared__ __align__(128) unsigned char smem[];
  plx_e16* s_qr = reinterpret_cast<plx_e16*>(smem);                     // [kMTiles*16][D]
  plx_e16* s_ring = reinterpret_cast<plx_e16*>(smem + kSmemRingOffset); // kStages x (K, V)
  __shared__ float s_rq[kUnits];
  const int split = blockIdx.x, b = blockIdx.z;
  const int kvh = blockIdx.y / kCtasPerGroup;
  const int h0 = kvh * kGroup + (blockIdx.y % kCtasPerGroup) * kHeadsPerCta;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  if (kTestFault) test_fault();

  // phase: load q and r as the stacked A operand (zero rows pad the tile)
  for (int i = threadIdx.x; i < kMTiles * 16 * kChunks; i += kThreads) {
    const int row = i / kChunks, c = i % kChunks;
    const int u = kLearned ? (row / 16) * 8 + (row & 7) : row;
    const plx_e16* g = qr_row(p, b, h0, u, kLearned && (row & 8));
    plx_cp_async16(s_qr + plx_swz(row, c), g ? g + c * 8 : static_cast<const plx_e16*>(p.q), g != nullptr);
  }
  plx_cp_async_commit();

  int k_begin, k_end;
  split_range(p, b, split, k_begin, k_end);
  const int num_tiles = k_begin < k_end ? (k_end - k_begin + kBlockN - 1) / kBlockN : 0;
  const KvSource src = make_kv_source(p, b, kvh);
  auto stage_k = [&](int t) { return s_ring + (t % kStages) * 2 * kBlockN * kHeadDim; };
  auto stage_v = [&](int t) { return stage_k(t) + kBlockN * kHeadDim; };

  KvSource::Pages pages;
#pragma unroll
  for (int t = 0; t < kStages - 1; ++t) {
    if (t < num_tiles) {
      src.fetch(pages, k_begin + t * kBlockN, k_end);
      load_kv_tile(stage_k(t), stage_v(t), src, pages, k_begin + t * kBlockN, k_end);
    }
    plx_cp_async_commit();
  }
  if (kStages - 1 < num_tiles) src.fetch(pages, k_begin + (kStages - 1) * kBlockN, k_end);
  // PDL trigger, once this CTA's first tiles are in flight: the merge grid starts only when
  // every CTA has triggered, i.e. the last one is resident, so it never takes a slot the
  // main grid still needs, and its launch overlaps nearly the whole kernel; placed here the
  // trigger stays off the path to the first HBM requests. The fused merge has no dependent.
  if (!kFusedMerge) plx_pdl_launch_dependents();
  WarpState st;
  state_init(st);
  const int key0 = warp * kKeysPerWarp;  // this warp's rows of every tile
  for (int t = 0; t < num_tiles; ++t) {
    const int tn = t + kStages - 1;
    if (tn < num_tiles) {
      load_kv_tile(stage_k(tn), stage_v(tn), src, pages, k_begin + tn * kBlockN, k_end);
      if (tn + 1 < num_tiles) src.fetch(pages, k_begin + (tn + 1) * kBlockN, k_end);  // a tile ahead
    }
    plx_cp_async_commit();
    plx_cp_async_wait<kStages - 1>();
    __syncthreads();
    float s[kMTiles][kKeysPerWarp / 8][4];
    scores<kKeysPerWarp>(s, s_qr, stage_k(t), key0, p.scale_log2);
    const int valid = k_end - (k_begin + t * kBlockN + key0);
    if (valid < kKeysPerWarp)
      mask_scores<kKeysPerWarp>(s, [&](int, int key) { return key < valid; });
    online_softmax<kKeysPerWarp>(s, st);
    accumulate<kKeysPerWarp>(s, st, stage_v(t), key0);
    __syncthreads();
  }
  plx_cp_async_wait<0>();
  __syncthreads();

  // phase: r.q per head (amplified affine only)
  if (kLearned && kAmplified) {
    for (int u = warp; u < kUnits; u += kWarps) {
      const int row = (u / 8) * 16 + (u & 7);
      float part = 0.f;
      for (int d = lane; d < kHeadDim; d += 32)
        part += plx_to_float(s_qr[plx_swz_elem(row, d)]) * plx_to_float(s_qr[plx_swz_elem(row + 8, d)]);
      part = plx_warp_sum(part);
      if (lane == 0) s_rq[u] = part;
    }
  } else {
    for (int u = threadIdx.x; u < kUnits; u += kThreads) s_rq[u] = 0.f;
  }

  // phase: merge -- each warp publishes its partial state in the (now free) K/V ring
  float* merge_o = reinterpret_cast<float*>(s_ring);
  float* merge_st = merge_o + kWarps * kUnits * 2 * kHeadDim;
  const int g = lane >> 2, c = 2 * (lane & 3);
#pragma unroll
  for (int mt = 0; mt < kMTiles; ++mt) {
#pragma unroll
    for (int h = 0; h < (kLearned ? 1 : 2); ++h) {
      // Parallax keeps d1 quad-uniform (and d2 = 0 about the centre c); softmax sums lanes.
      const float d1 = kLearned ? st.d1[mt][0] : plx_quad_sum(st.d1[mt][h]);
      const int u = kLearned ? mt * 8 + g : mt * 16 + g + 8 * h;
      if (u < kUnits) {
        float* o = merge_o + (warp * kUnits + u) * 2 * kHeadDim;
#pragma unroll
        for (int n = 0; n < kHeadDim / 8; ++n) {
          o[n * 8 + c] = st.o[mt][n][2 * h];
          o[n * 8 + c + 1] = st.o[mt][n][2 * h + 1];
          if (kLearned) {
            o[kHeadDim + n * 8 + c] = st.o[mt][n][2];
            o[kHeadDim + n * 8 + c + 1] = st.o[mt][n][3];
          }
        }
        if ((lane & 3) == 0) {
          float* ms = merge_st + (warp * kUnits + u) * 4;
          ms[0] = st.m[mt][h];
          ms[1] = d1;
          ms[2] = 0.f;
          ms[3] = kLearned ? st.c[mt] : 0.f;
        }
      }
    }
  }
  __syncthreads();
  merge_and_store(p, merge_o, merge_st, s_rq, b, h0, split);
  if (kFusedMerge && p.num_splits > 1) fused_split_merge(p, s_rq, b, h0, reinterpret_cast<float*>(smem));
}
)cuda";

constexpr absl::string_view kDecodeFma = R"cuda(
// ---- the decode kernel (scalar FMA path) -------------------------------------------------
extern "C" __global__ void __launch_bounds__(kThreads) plx_decode(const PlxDecodeParams p) {
  extern __shared__ __align__(128) unsigned char smem[];
  float* s_q = reinterpret_cast<float*>(smem);                           // [kRows][D] fp32
  float* s_p = s_q + kRows * kHeadDim;                                   // [kWarps][kRows][32]
  plx_e16* s_ring = reinterpret_cast<plx_e16*>(smem + kSmemRingOffset);  // kStages x (K, V)
  __shared__ float s_rq[kUnits];
  const int split = blockIdx.x, b = blockIdx.z;
  const int kvh = blockIdx.y / kCtasPerGroup;
  const int h0 = kvh * kGroup + (blockIdx.y % kCtasPerGroup) * kHeadsPerCta;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  if (kTestFault) test_fault();

  // phase: load q and r rows as fp32
  load_qr_fp32(s_q, 0, kThreads, [&](int row) {
    return qr_row(p, b, h0, row % kUnits, row >= kUnits);
  });

  int k_begin, k_end;
  split_range(p, b, split, k_begin, k_end);
  const int num_tiles = k_begin < k_end ? (k_end - k_begin + kBlockN - 1) / kBlockN : 0;
  const KvSource src = make_kv_source(p, b, kvh);
  auto stage_k = [&](int t) { return s_ring + (t % kStages) * 2 * kBlockN * kHeadDim; };
  auto stage_v = [&](int t) { return stage_k(t) + kBlockN * kHeadDim; };

  KvSource::Pages pages;
#pragma unroll
  for (int t = 0; t < kStages - 1; ++t) {
    if (t < num_tiles) {
      src.fetch(pages, k_begin + t * kBlockN, k_end);
      load_kv_tile(stage_k(t), stage_v(t), src, pages, k_begin + t * kBlockN, k_end);
    }
    plx_cp_async_commit();
  }
  if (kStages - 1 < num_tiles) src.fetch(pages, k_begin + (kStages - 1) * kBlockN, k_end);
  // PDL trigger, once this CTA's first tiles are in flight: the merge grid starts only when
  // every CTA has triggered, i.e. the last one is resident, so it never takes a slot the
  // main grid still needs, and its launch overlaps nearly the whole kernel; placed here the
  // trigger stays off the path to the first HBM requests. The fused merge has no dependent.
  if (!kFusedMerge) plx_pdl_launch_dependents();
  WarpState st;
  state_init(st);
  for (int t = 0; t < num_tiles; ++t) {
    const int tn = t + kStages - 1;
    if (tn < num_tiles) {
      load_kv_tile(stage_k(tn), stage_v(tn), src, pages, k_begin + tn * kBlockN, k_end);
      if (tn + 1 < num_tiles) src.fetch(pages, k_begin + (tn + 1) * kBlockN, k_end);  // a tile ahead
    }
    plx_cp_async_commit();
    plx_cp_async_wait<kStages - 1>();
    __syncthreads();
#pragma unroll 1
    for (int kb = 0; kb < kKeysPerWarp; kb += 32) {
      const int kr0 = warp * kKeysPerWarp + kb;
      const int valid = k_end - (k_begin + t * kBlockN + kr0);
      attend_block(st, s_q, stage_k(t), stage_v(t), kr0, s_p + warp * kRows * 32, p.scale_log2,
                   [&](int, int key) { return key < valid; });
    }
    __syncthreads();
  }
  plx_cp_async_wait<0>();
  __syncthreads();

  // phase: r.q per head (amplified affine only)
  for (int u = warp; u < kUnits; u += kWarps) {
    float part = 0.f;
    if (kLearned && kAmplified)
      for (int d = lane; d < kHeadDim; d += 32)
        part += s_q[u * kHeadDim + d] * s_q[(kUnits + u) * kHeadDim + d];
    part = plx_warp_sum(part);
    if (lane == 0) s_rq[u] = part;
  }

  // phase: merge -- each warp publishes its partial state in the (now free) K/V ring
  float* merge_o = reinterpret_cast<float*>(s_ring);
  float* merge_st = merge_o + kWarps * kUnits * 2 * kHeadDim;
#pragma unroll
  for (int u = 0; u < kUnits; ++u) {
    float* o = merge_o + (warp * kUnits + u) * 2 * kHeadDim + lane * kDPerLane;
#pragma unroll
    for (int e = 0; e < kDPerLane; ++e) {
      o[e] = st.o1[u][e];
      if (kLearned) o[kHeadDim + e] = st.o2[u][e];
    }
    if (lane == 0) {
      float* ms = merge_st + (warp * kUnits + u) * 4;
      ms[0] = st.m[u];
      ms[1] = st.d1[u];
      ms[2] = st.d2[u];
      ms[3] = 0.f;  // fp32 p2: no centre needed
    }
  }
  __syncthreads();
  merge_and_store(p, merge_o, merge_st, s_rq, b, h0, split);
  if (kFusedMerge && p.num_splits > 1) fused_split_merge(p, s_rq, b, h0, reinterpret_cast<float*>(smem));
}
)cuda";

}  // namespace

std::string DecodeKernels(const Variant& v) {
  const bool mma = v.schedule().path == MathPath::kMma;
  return absl::StrCat(KvSourceDecode(v), kTileLoaders, kFinalize, mma ? kMmaCore : kFmaCore,
                      kDecodeCommon, mma ? kDecodeMma : kDecodeFma, kDecodeMerge);
}

}  // namespace parallax::gen
