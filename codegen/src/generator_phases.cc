// Device-side phases shared by the decode and prefill kernels. Each is one small device
// function; the kernels read top to bottom as: load -> scores -> online softmax ->
// accumulate -> (merge) -> store.
#include "generator_internal.h"

namespace parallax::gen {

const absl::string_view kTileLoaders = R"cuda(
// ---- phase: load --------------------------------------------------------------------
// Element offset of 16-byte chunk `chunk` of row `row` in a [rows][kHeadDim] tile. The chunk
// index is XORed with row%8 so the 8 row addresses of one ldmatrix hit 8 bank groups.
__device__ __forceinline__ int plx_swz(int row, int chunk) {
  return row * kHeadDim + ((chunk ^ (row & 7)) << 3);
}
__device__ __forceinline__ int plx_swz_elem(int row, int d) {
  return plx_swz(row, d >> 3) + (d & 7);
}

// One K and one V tile of kBlockN keys starting at key k0 into the ring stage. Keys at or
// past k_end are zero-filled. Each thread always copies the same 16-byte chunk column of
// rows tid/kChunks + j*kRowsPerPass, so a row's address (and, for paged KV, its page,
// fetched a tile ahead into `pages`) is computed once per row.
__device__ __forceinline__ void load_kv_tile(plx_e16* sk, plx_e16* sv, const KvSource& src,
                                             const KvSource::Pages& pages, int k0, int k_end) {
  const int chunk = threadIdx.x % kChunks;
#pragma unroll
  for (int j = 0; j < kRowsPerThread; ++j) {
    const int row = threadIdx.x / kChunks + j * kRowsPerPass;
    if (kRowsPerPass * kRowsPerThread > kBlockN && row >= kBlockN) break;
    const int key = k0 + row;
    const bool valid = key < k_end;
    const plx_e16* gk;
    const plx_e16* gv;
    src.rows(pages, j, valid ? key : k_end - 1, gk, gv);
    plx_cp_async16(sk + plx_swz(row, chunk), gk + chunk * 8, valid);
    plx_cp_async16(sv + plx_swz(row, chunk), gv + chunk * 8, valid);
  }
}
)cuda";

const absl::string_view kFinalize = R"cuda(
// ---- phase: finalize (accumulators -> one output element) -------------------------------
// With weights p1 (d1 = sum p1) and a centre c, the accumulators are O1 = sum p1 v,
// O2 = sum p1 (s2 - c) v and d2 = sum p1 (s2 - c). Parallax is shift-invariant in c:
//   vbar = O1/d1, tbar = c + d2/d1, C = Cov_w(v, k) r = O2/d1 - (d2/d1) vbar
//   plain: out = vbar - C;  amplified: out = vbar - C/delta, delta = 1 - (tbar - r.q)
// Keeping c near tbar keeps O2 free of cancellation when the weights concentrate on few keys.
// No visible key (d1 == 0) gives 0.
__device__ __forceinline__ float finalize(float o1, float o2, float d1, float d2, float c, float rq,
                                          float eps) {
  if (d1 == 0.f) return 0.f;
  const float inv = 1.f / d1;
  const float vbar = o1 * inv;
  if (!kLearned) return vbar;
  const float cov = o2 * inv - d2 * inv * vbar;
  if (!kAmplified) return vbar - cov;
  float delta = 1.f - (c + d2 * inv - rq);
  if (fabsf(delta) < eps) delta = delta < 0.f ? -eps : eps;
  return vbar - cov / delta;
}

// Partial states (m, d1, d2, c, O1, O2) merged to one: rescale to the common max and move
// every O2/d2 to the weighted mean centre before summing.
struct Merged {
  float m, o1, o2, d1, d2, c;
};
template <typename Get>
__device__ __forceinline__ Merged merge_partials(int n, Get get) {
  float m = -PLX_INF;
  for (int i = 0; i < n; ++i) m = fmaxf(m, get(i).m);
  float d1 = 0.f, dc = 0.f;
  for (int i = 0; i < n; ++i) {
    const auto s = get(i);
    if (s.m == -PLX_INF) continue;
    const float w = plx_exp2(s.m - m) * s.d1;
    d1 += w;
    dc += w * s.c;
  }
  Merged r{m, 0.f, 0.f, d1, 0.f, d1 > 0.f ? dc / d1 : 0.f};
  for (int i = 0; i < n; ++i) {
    const auto s = get(i);
    if (s.m == -PLX_INF) continue;
    const float sc = plx_exp2(s.m - m);
    r.o1 += sc * s.o1;
    if (kLearned) {
      r.o2 += sc * (s.o2 + (s.c - r.c) * s.o1);
      r.d2 += sc * (s.d2 + (s.c - r.c) * s.d1);
    }
  }
  return r;
}
struct Partial {
  float m, d1, d2, c, o1, o2;
};
)cuda";

const absl::string_view kMmaCore = R"cuda(
// ---- warp state (mma path): fp32 accumulators in the m16n8 C-fragment layout ----------
// Lane l holds rows g = l/4 and g + 8 of each 16-row tile. Parallax stacks the q rows of 8
// query units over their r rows, so one lane holds s1 and s2 (and O1 and O2) of the same
// unit: p2 = p1 * s2 needs no data exchange. Softmax uses all 16 rows for 16 units.
struct WarpState {
  float o[kMTiles][kHeadDim / 8][4];
  float m[kMTiles][2];   // running max of s1 * scale * log2(e), rows g and g + 8
  float d1[kMTiles][2];  // lane-partial sums of p1 (reduced over the quad at the end)
  float c[kMTiles];      // Parallax: running weighted mean of s2 (the centre of O2)
};

__device__ __forceinline__ void state_init(WarpState& st) {
#pragma unroll
  for (int mt = 0; mt < kMTiles; ++mt) {
#pragma unroll
    for (int n = 0; n < kHeadDim / 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) st.o[mt][n][e] = 0.f;
    st.m[mt][0] = st.m[mt][1] = -PLX_INF;
    st.d1[mt][0] = st.d1[mt][1] = 0.f;
    st.c[mt] = 0.f;
  }
}

// ---- phase: scores  S = [q; r] K^T over KN keys (rows key0.. of the K tile) -------------
template <int KN>
__device__ __forceinline__ void scores(float (&s)[kMTiles][KN / 8][4], const plx_e16* sqr,
                                       const plx_e16* sk, int key0, float scale_log2) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
    for (int n = 0; n < KN / 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) s[mt][n][e] = 0.f;
#pragma unroll
  for (int ks = 0; ks < kHeadDim / 16; ++ks) {
    plx_u32 a[kMTiles][4];
#pragma unroll
    for (int mt = 0; mt < kMTiles; ++mt)
      plx_ldmatrix_x4(a[mt], sqr + plx_swz(mt * 16 + (lane & 15), 2 * ks + (lane >> 4)));
#pragma unroll
    for (int nb = 0; nb < KN / 16; ++nb) {
      plx_u32 b[4];  // B fragments of two 8-key n-tiles: keys K rows, d along k
      plx_ldmatrix_x4(b, sk + plx_swz(key0 + nb * 16 + ((lane >> 4) << 3) + (lane & 7),
                                      2 * ks + ((lane >> 3) & 1)));
#pragma unroll
      for (int mt = 0; mt < kMTiles; ++mt) {
        plx_mma(s[mt][2 * nb], a[mt], b[0], b[1]);
        plx_mma(s[mt][2 * nb + 1], a[mt], b[2], b[3]);
      }
    }
  }
  // s1 in log2 units (exp2 later); s2 (Parallax rows 8..15) stays unscaled.
#pragma unroll
  for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
    for (int n = 0; n < KN / 8; ++n)
#pragma unroll
      for (int e = 0; e < (kLearned ? 2 : 4); ++e) s[mt][n][e] *= scale_log2;
}

// Hides keys a unit may not see: visible(unit, key) with key counted from the block start.
template <int KN, typename Visible>
__device__ __forceinline__ void mask_scores(float (&s)[kMTiles][KN / 8][4], Visible visible) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
    for (int n = 0; n < KN / 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        if (kLearned && e >= 2) continue;  // s2 rows: p2 = p1 * s2 is zero when p1 is
        const int unit = kLearned ? mt * 8 + (lane >> 2) : mt * 16 + (lane >> 2) + 8 * (e >> 1);
        const int key = n * 8 + 2 * (lane & 3) + (e & 1);
        if (!visible(unit, key)) s[mt][n][e] = -PLX_INF;
      }
}

// ---- phase: online softmax  p1 = exp2(s1 - m), p2 = p1 (s2 - c); rescale the running sums --
// Parallax moves the centre c to the running weighted mean of s2 before forming p2, so the
// 16-bit p2 operand carries only the spread of s2 (see finalize).
template <int KN>
__device__ __forceinline__ void online_softmax(float (&s)[kMTiles][KN / 8][4], WarpState& st) {
#pragma unroll
  for (int mt = 0; mt < kMTiles; ++mt) {
#pragma unroll
    for (int h = 0; h < (kLearned ? 1 : 2); ++h) {
      float mx = -PLX_INF;
#pragma unroll
      for (int n = 0; n < KN / 8; ++n) mx = fmaxf(mx, fmaxf(s[mt][n][2 * h], s[mt][n][2 * h + 1]));
      const float m_new = fmaxf(st.m[mt][h], plx_quad_max(mx));
      const float m_use = m_new == -PLX_INF ? 0.f : m_new;  // all hidden so far: avoid inf - inf
      const float alpha = plx_exp2(st.m[mt][h] - m_use);
      st.m[mt][h] = m_new;
      float sum1 = 0.f, sum_s2 = 0.f;
#pragma unroll
      for (int n = 0; n < KN / 8; ++n) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const float p1 = plx_exp2(s[mt][n][2 * h + e] - m_use);
          s[mt][n][2 * h + e] = p1;
          sum1 += p1;
          if (kLearned) sum_s2 += p1 * s[mt][n][2 + e];
        }
      }
      if (kLearned) {  // d1 is kept quad-uniform here: the centre needs the row's full sums
        const float t1 = plx_quad_sum(sum1), t2 = plx_quad_sum(sum_s2);  // all lanes shuffle
        const float d1_old = st.d1[mt][0] * alpha;
        const float d1_new = d1_old + t1;
        const float c_old = st.c[mt];
        const float c_new = d1_new > 0.f ? (d1_old * c_old + t2) / d1_new : c_old;
        const float shift = c_old - c_new;
        st.d1[mt][0] = d1_new;
        st.c[mt] = c_new;
#pragma unroll
        for (int n = 0; n < KN / 8; ++n)
#pragma unroll
          for (int e = 0; e < 2; ++e) s[mt][n][2 + e] = s[mt][n][e] * (s[mt][n][2 + e] - c_new);
#pragma unroll
        for (int n = 0; n < kHeadDim / 8; ++n) {
          st.o[mt][n][2] = alpha * fmaf(shift, st.o[mt][n][0], st.o[mt][n][2]);
          st.o[mt][n][3] = alpha * fmaf(shift, st.o[mt][n][1], st.o[mt][n][3]);
          st.o[mt][n][0] *= alpha;
          st.o[mt][n][1] *= alpha;
        }
      } else {
        st.d1[mt][h] = st.d1[mt][h] * alpha + sum1;
#pragma unroll
        for (int n = 0; n < kHeadDim / 8; ++n) {
          st.o[mt][n][2 * h] *= alpha;
          st.o[mt][n][2 * h + 1] *= alpha;
        }
      }
    }
  }
}

// ---- phase: accumulate  [O1; O2] += [P1; P2] V (P fragments reused as the A operand) ----
template <int KN>
__device__ __forceinline__ void accumulate(const float (&s)[kMTiles][KN / 8][4], WarpState& st,
                                           const plx_e16* sv, int key0) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int kb = 0; kb < KN / 16; ++kb) {
    plx_u32 a[kMTiles][4];
#pragma unroll
    for (int mt = 0; mt < kMTiles; ++mt) {
      a[mt][0] = plx_pack2(s[mt][2 * kb][0], s[mt][2 * kb][1]);
      a[mt][1] = plx_pack2(s[mt][2 * kb][2], s[mt][2 * kb][3]);
      a[mt][2] = plx_pack2(s[mt][2 * kb + 1][0], s[mt][2 * kb + 1][1]);
      a[mt][3] = plx_pack2(s[mt][2 * kb + 1][2], s[mt][2 * kb + 1][3]);
    }
#pragma unroll
    for (int dn = 0; dn < kHeadDim / 16; ++dn) {
      plx_u32 b[4];  // V^T fragments of two 8-wide d tiles
      plx_ldmatrix_x4_trans(b, sv + plx_swz(key0 + kb * 16 + (((lane >> 3) & 1) << 3) + (lane & 7),
                                            2 * dn + (lane >> 4)));
#pragma unroll
      for (int mt = 0; mt < kMTiles; ++mt) {
        plx_mma(st.o[mt][2 * dn], a[mt], b[0], b[1]);
        plx_mma(st.o[mt][2 * dn + 1], a[mt], b[2], b[3]);
      }
    }
  }
}
)cuda";

const absl::string_view kFmaCore = R"cuda(
// ---- warp state (fma path): lane l owns head-dim slice [l*kDPerLane, (l+1)*kDPerLane) ---
constexpr int kDPerLane = kHeadDim / 32;
constexpr int kRows = kLearned ? 2 * kUnits : kUnits;  // q rows, then r rows
struct WarpState {
  float o1[kUnits][kDPerLane];
  float o2[kUnits][kDPerLane];  // unused (and optimised away) for softmax
  float m[kUnits];   // warp-uniform running max (log2 units)
  float d1[kUnits];  // warp-uniform sums
  float d2[kUnits];
};

__device__ __forceinline__ void state_init(WarpState& st) {
#pragma unroll
  for (int u = 0; u < kUnits; ++u) {
#pragma unroll
    for (int e = 0; e < kDPerLane; ++e) {
      st.o1[u][e] = 0.f;
      if (kLearned) st.o2[u][e] = 0.f;
    }
    st.m[u] = -PLX_INF;
    st.d1[u] = st.d2[u] = 0.f;
  }
}

__device__ __forceinline__ void unpack8(const plx_u32x4& raw, float (&f)[8]) {
  const plx_u32 w[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    f[2 * i] = plx_to_float((plx_e16)(w[i] & 0xffffu));
    f[2 * i + 1] = plx_to_float((plx_e16)(w[i] >> 16));
  }
}

// One block of 32 keys (rows kr0.. of the tile), lane = key: scores, online softmax and the
// value accumulation, with p1/p2 exchanged through the warp's scratch `sp` [kRows][32].
template <typename Visible>
__device__ __forceinline__ void attend_block(WarpState& st, const float* sq, const plx_e16* sk,
                                             const plx_e16* sv, int kr0, float* sp,
                                             float scale_log2, Visible visible) {
  const int lane = threadIdx.x & 31;
  // phase: scores
  float s[kRows];
#pragma unroll
  for (int u = 0; u < kRows; ++u) s[u] = 0.f;
#pragma unroll 2
  for (int c = 0; c < kChunks; ++c) {
    float kf[8];
    unpack8(*reinterpret_cast<const plx_u32x4*>(sk + plx_swz(kr0 + lane, c)), kf);
#pragma unroll
    for (int u = 0; u < kRows; ++u)
#pragma unroll
      for (int e = 0; e < 8; ++e) s[u] = fmaf(sq[u * kHeadDim + c * 8 + e], kf[e], s[u]);
  }
  // phase: online softmax
#pragma unroll
  for (int u = 0; u < kUnits; ++u) {
    const float x = visible(u, lane) ? s[u] * scale_log2 : -PLX_INF;
    const float m_new = fmaxf(st.m[u], plx_warp_max(x));
    const float m_use = m_new == -PLX_INF ? 0.f : m_new;
    const float alpha = plx_exp2(st.m[u] - m_use);
    st.m[u] = m_new;
    const float p1 = plx_exp2(x - m_use);
    sp[u * 32 + lane] = p1;
    if (kLearned) sp[(kUnits + u) * 32 + lane] = p1 * s[kUnits + u];
    st.d1[u] *= alpha;
    st.d2[u] *= alpha;
#pragma unroll
    for (int e = 0; e < kDPerLane; ++e) {
      st.o1[u][e] *= alpha;
      if (kLearned) st.o2[u][e] *= alpha;
    }
  }
  __syncwarp();
  // phase: accumulate
  const int d0 = lane * kDPerLane;
#pragma unroll 4
  for (int j = 0; j < 32; ++j) {
    float v[kDPerLane];
    const plx_e16* vp = sv + plx_swz_elem(kr0 + j, d0);
#pragma unroll
    for (int e = 0; e < kDPerLane; ++e) v[e] = plx_to_float(vp[e]);
#pragma unroll
    for (int u = 0; u < kUnits; ++u) {
      const float p1 = sp[u * 32 + j];
      st.d1[u] += p1;
#pragma unroll
      for (int e = 0; e < kDPerLane; ++e) st.o1[u][e] = fmaf(p1, v[e], st.o1[u][e]);
      if (kLearned) {
        const float p2 = sp[(kUnits + u) * 32 + j];
        st.d2[u] += p2;
#pragma unroll
        for (int e = 0; e < kDPerLane; ++e) st.o2[u][e] = fmaf(p2, v[e], st.o2[u][e]);
      }
    }
  }
  __syncwarp();
}

// q (and r) rows of `units` query units into fp32 shared memory [kRows][kHeadDim].
template <typename RowPtr>
__device__ __forceinline__ void load_qr_fp32(float* sq, int first_thread, int nthreads,
                                             RowPtr row_ptr) {
  for (int i = threadIdx.x - first_thread; i < kRows * kChunks; i += nthreads) {
    const int row = i / kChunks, c = i % kChunks;
    const plx_e16* g = row_ptr(row);
    float f[8];
    if (g != nullptr) {
      unpack8(*reinterpret_cast<const plx_u32x4*>(g + c * 8), f);
    } else {
#pragma unroll
      for (int e = 0; e < 8; ++e) f[e] = 0.f;
    }
#pragma unroll
    for (int e = 0; e < 8; ++e) sq[row * kHeadDim + c * 8 + e] = f[e];
  }
}
)cuda";

}  // namespace parallax::gen
