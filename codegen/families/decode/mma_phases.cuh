// The decode kernels' phases around the key loop on the mma.sync core, shared by the decode
// family's plx_decode (kernel_mma.cuh) and decode_sm90's (its kernel.cuh): loading the stacked
// [q; r] A operand, r.q for the amplified affine, and publishing each warp's state for the
// cross-warp merge. Needs: decode_common.cuh (qr_row, DecodeCta, merge layout), mma_core.cuh
// (WarpState, plx_swz), kMTiles, kChunks (generator).

// ---- phase: load q and r as the stacked A operand (zero rows pad the tile) --------------
__device__ __forceinline__ void load_qr(const PlxDecodeParams& p, const DecodeCta& cta, plx_e16* s_qr) {
  for (int i = threadIdx.x; i < kMTiles * 16 * kChunks; i += kThreads) {
    const int row = i / kChunks, c = i % kChunks;
    const int u = kLearned ? (row / 16) * 8 + (row & 7) : row;
    const plx_e16* g = qr_row(p, cta.b, cta.h0, u, kLearned && (row & 8));
    plx_cp_async16(s_qr + plx_swz(row, c), g ? g + c * 8 : static_cast<const plx_e16*>(p.q), g != nullptr);
  }
  plx_cp_async_commit();
}

// ---- phase: r.q per head (amplified affine only; 0 otherwise) ---------------------------
__device__ __forceinline__ void probe_dot_query(const plx_e16* s_qr, float* s_rq) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
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
}

// ---- phase: each warp publishes its state for the cross-warp merge ----------------------
// merge_o [kWarps][kUnits][2][kHeadDim], merge_st [kWarps][kUnits][4] (m, d1, d2, c), in the
// C-fragment layout of mma_core.cuh: lane l holds rows l/4 (and l/4 + 8) of each tile.
__device__ __forceinline__ void publish_warp_state(const WarpState& st, float* merge_o, float* merge_st) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
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
}
