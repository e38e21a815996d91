// The sm_90a family's K/V from contiguous tensors ([B, Lk, Hkv, D] or packed [Tk, Hkv, D]):
// one TMA box of kBlockN keys per 64-column chunk. Rows of a tile past the sequence's keys
// are TMA's zero fill or the next packed sequence's keys, so nothing needs clearing.
// Needs: kernel.cuh (Sm90Smem, token_base, batch_coord), sequence.cuh.

__device__ __forceinline__ QueryTile kv_query_tile(const PlxPrefillParams& p, const Sequence& seq, int row0) {
  return query_tile(p, seq, row0);
}

// it: the CTA's K/V tiles so far (the ring's running count).
__device__ __forceinline__ void produce_kv(const PlxPrefillTmaParams& P, const Sm90Smem& sm, const Sequence&,
                                           const QueryTile& qt, int b, int kvh, int it) {
  if ((threadIdx.x & 31) != 0) return;  // lane 0 issues: two boxes a tile need no help
  const PlxPrefillParams& p = P.p;
  const int ktok = token_base(p.cu_seqlens_k, b) + qt.lo, kb = batch_coord(p.cu_seqlens_k, b);
  // Not unrolled: the producer runs on kProducerRegs registers.
#pragma unroll 1
  for (int t = 0; t < qt.num_tiles; ++t) {
    const int stage = (it + t) % kStages;
    const int parity = (((it + t) / kStages) & 1) ^ 1;
    plx_mbar_wait(sm.k_empty(stage), parity);
    plx_mbar_arrive_expect_tx(sm.k_full(stage), kTileBytes);
    for (int c = 0; c < kDChunks; ++c)
      plx_tma_load_4d(sm.k(stage) + c * kBlockN * 64, &P.tk, sm.k_full(stage), c * 64, kvh, ktok + t * kBlockN, kb);
    plx_mbar_wait(sm.v_empty(stage), parity);
    plx_mbar_arrive_expect_tx(sm.v_full(stage), kTileBytes);
    for (int c = 0; c < kDChunks; ++c)
      plx_tma_load_4d(sm.v(stage) + c * kBlockN * 64, &P.tv, sm.v_full(stage), c * 64, kvh, ktok + t * kBlockN, kb);
  }
}

__device__ __forceinline__ void clear_kv_tail(const Sequence&, plx_e16*, int, int) {}
