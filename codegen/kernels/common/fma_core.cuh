// Warp-level attention on scalar FMAs: lane = key for scores, lane = head-dim slice for the
// accumulators, p1/p2 exchanged through a per-warp scratch row.
// Needs: prelude.cuh, element16.cuh, tile_loader.cuh (plx_swz); kHeadDim, kChunks, kUnits,
// kLearned (generator).

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
