// One warp's math on a resident K/V tile, with every shared-memory address worked out once.
// A lane's ldmatrix rows inside a tile never change (its keys key0.., fixed columns), and in
// the 128-byte swizzle a row's column pattern repeats every 4 ldmatrix steps, so 4 byte
// offsets per operand (K, V, [q; r]) held in registers cover the whole loop: each ldmatrix
// is [tile base + lane offset + constant]. Profiling the generic core here (ncu, B=1) showed
// ~45% of a tile's instructions were 64-bit address arithmetic; see docs/decode-performance.md.
// The stacked [q; r] A operand stays in registers across tiles when it fits (kHoistQr).
// Needs: mma_sync.cuh (plx_mma, plx_ldsm_x4), mma_core.cuh (WarpState, softmax_update), kv_tma.cuh
// (plx_swz); kHeadDim, kMTiles, kBlockN (generator).

constexpr int kChunkBytes = kBlockN * 128;  // one 64-column chunk of a tile: kBlockN rows of 128 bytes
constexpr bool kHoistQr = kMTiles * (kHeadDim / 16) <= 8;  // [q; r] fragments in <= 32 registers

// Byte offsets inside a tile (or the [q; r] rows) of column pattern j = (chunk & 7) / 2.
struct LaneAddr {
  plx_u32 k[4];  // K as the B operand of S: rows key0 + 8 (lane / 16) + lane % 8
  plx_u32 v[4];  // V^T (ldmatrix.trans) as the B operand of P V: rows key0 + 8 ((lane / 8) % 2) + lane % 8
  plx_u32 q[4];  // [q; r] as the A operand: rows lane % 16
};
__device__ __forceinline__ LaneAddr lane_addr(int key0) {
  const int lane = threadIdx.x & 31;
  LaneAddr a;
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    a.k[j] = 2 * plx_swz(key0 + ((lane >> 4) << 3) + (lane & 7), 2 * j + ((lane >> 3) & 1));
    a.v[j] = 2 * plx_swz(key0 + (((lane >> 3) & 1) << 3) + (lane & 7), 2 * j + (lane >> 4));
    a.q[j] = 2 * plx_swz(lane & 15, 2 * j + (lane >> 4));
  }
  return a;
}

// The [q; r] fragment of head-dim step ks (16 columns) and row tile mt.
__device__ __forceinline__ void load_qr_frag(plx_u32 (&a)[4], plx_u32 sqr, const LaneAddr& la, int ks, int mt) {
  plx_ldsm_x4(a, sqr + la.q[ks & 3] + (ks >> 2) * kChunkBytes + mt * 16 * 128);
}
struct QrFrags {
  plx_u32 a[kHoistQr ? kHeadDim / 16 : 1][kMTiles][4];
};
__device__ __forceinline__ void hoist_qr(QrFrags& f, plx_u32 sqr, const LaneAddr& la) {
  if constexpr (kHoistQr) {
#pragma unroll
    for (int ks = 0; ks < kHeadDim / 16; ++ks)
#pragma unroll
      for (int mt = 0; mt < kMTiles; ++mt) load_qr_frag(f.a[ks][mt], sqr, la, ks, mt);
  }
}

// ---- phase: scores  S = [q; r] K^T over this warp's KN keys; s1 in log2 units -------------
// The scale is applied before any mask: a masked -inf times a scale of 0 (uniform weights)
// would be NaN.
template <int KN>
__device__ __forceinline__ void tile_scores(float (&s)[kMTiles][KN / 8][4], const QrFrags& f, plx_u32 sqr,
                                            plx_u32 ktile, const LaneAddr& la, float scale_log2) {
  clear_scores<KN>(s);
#pragma unroll
  for (int ks = 0; ks < kHeadDim / 16; ++ks) {
    plx_u32 a[kMTiles][4];
#pragma unroll
    for (int mt = 0; mt < kMTiles; ++mt) {
      if constexpr (kHoistQr) {
#pragma unroll
        for (int i = 0; i < 4; ++i) a[mt][i] = f.a[ks][mt][i];
      } else {
        load_qr_frag(a[mt], sqr, la, ks, mt);
      }
    }
#pragma unroll
    for (int nb = 0; nb < KN / 16; ++nb) {
      plx_u32 b[4];  // two 8-key n-tiles
      plx_ldsm_x4(b, ktile + la.k[ks & 3] + (ks >> 2) * kChunkBytes + nb * 16 * 128);
      mma_pair(s, a, b, nb);
    }
  }
  scale_scores<KN>(s, scale_log2);
}

// ---- phase: accumulate  [O1; O2] += [P1; P2] V (P fragments reused as the A operand) ------
template <int KN>
__device__ __forceinline__ void tile_accumulate(const float (&s)[kMTiles][KN / 8][4], WarpState& st, plx_u32 vtile,
                                                const LaneAddr& la) {
  accumulate_pv<KN>(s, st, [&](plx_u32 (&b)[4], int kb, int dn) {
    plx_ldsm_x4_trans(b, vtile + la.v[dn & 3] + (dn >> 2) * kChunkBytes + kb * 16 * 128);
  });
}

// ---- phase: online softmax on a tile; O is only rescaled when some row's max moved (after
// the first tiles it rarely does), Parallax's centre always moves.
template <int KN>
__device__ __forceinline__ void tile_softmax(float (&s)[kMTiles][KN / 8][4], WarpState& st) {
  Rescale r;
  softmax_update<KN>(s, st, r);
  rescale_o<true>(st, r, r.shift);
}
