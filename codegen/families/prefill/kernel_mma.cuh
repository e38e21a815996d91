// plx_prefill on the tensor cores. CTA (query tile, head, batch) owns kBlockM query rows of
// one head; warp w owns kUnits of them as stacked [q; r] A operands and streams every K/V
// tile of the causal range through its own online softmax, so no cross-warp merge is needed.
// Needs: sequence.cuh, mma_core.cuh, kv_pipeline.cuh; kMTiles, kUnits, kSmemRingOffset
// (generator).

// ---- the prefill kernel (mma.sync path) --------------------------------------------------
// A warp whose rows all kept their max skips the O scaling (not at head_dim 256, where the
// vote's registers make ptxas spill). One max/sum chain: two measured no faster (H200).
constexpr int kSoftmaxChains = 1;
constexpr bool kSkipIdleRescale = kHeadDim < 256;

extern "C" __global__ void __launch_bounds__(kThreads) plx_prefill(const PlxPrefillParams p) {
  extern __shared__ __align__(128) unsigned char smem[];
  const KvRing ring{reinterpret_cast<plx_e16*>(smem + kSmemRingOffset)};
  const int h = blockIdx.y, b = blockIdx.z;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const Sequence seq = make_sequence(p, b, h);
  const int row0 = query_tile_row0();
  if (row0 >= seq.lq) return;
  const QueryTile qt = query_tile(p, seq, row0);
  const int wrow0 = row0 + warp * kUnits;  // this warp's first query row

  // phase: load q and r of every warp's rows as stacked A operands (zero rows pad)
  plx_e16* s_qr = reinterpret_cast<plx_e16*>(smem);  // [kWarps][kMTiles*16][D]
  for (int i = threadIdx.x; i < kWarps * kMTiles * 16 * kChunks; i += kThreads) {
    const int row = i / kChunks, c = i % kChunks;
    const int w = row / (kMTiles * 16), rr = row % (kMTiles * 16);
    const int u = kLearned ? (rr / 16) * 8 + (rr & 7) : rr;
    const int qi = row0 + w * kUnits + u;
    const bool valid = u < kUnits && qi < seq.lq;
    const plx_e16* g = (kLearned && (rr & 8)) ? seq.r + (long long)qi * p.r_stride_l
                                                : seq.q + (long long)qi * p.q_stride_l;
    plx_cp_async16(s_qr + plx_swz(row, c), valid ? g + c * 8 : seq.q, valid);
  }
  plx_cp_async_commit();
  const plx_e16* s_qr_warp = s_qr + warp * kMTiles * 16 * kHeadDim;

  // phase: scores -> online softmax -> accumulate, tile by tile. The scale goes into the
  // exponent's FFMA (its floor keeps tau = 0 uniform without inf * 0); Parallax forms p2 in
  // the previous tiles' centre, so p2 does not wait for this tile's sums to cross the quad.
  const float scale = fmaxf(p.scale_log2, 1e-30f);
  WarpState st;
  CentreLag lag = {};
  stream_kv_one_barrier(ring, seq.kv, qt.lo, qt.hi, qt.num_tiles, [&] { state_init(st); }, [&](int t) {
    const int t0 = qt.lo + t * kBlockN;
    float s[kMTiles][kBlockN / 8][4];
    scores<kBlockN, false>(s, s_qr_warp, ring.k(t), 0, 0.f);
    if (edge_tile(p, seq, qt, t0))
      mask_scores<kBlockN>(s, [&](int u, int key) { return visible_key(p, seq, wrow0 + u, t0 + key); });
    Rescale r;
    softmax_update<kBlockN, kSoftmaxChains, false, true>(s, st, r, scale);
    rescale_o<kSkipIdleRescale>(st, r, r.shift);
    accumulate<kBlockN>(s, st, ring.v(t), 0);
  });
  settle_centre(st, lag);

  // phase: store -- each lane finalizes two adjacent columns of its rows
  const int g = lane >> 2, c = 2 * (lane & 3);
#pragma unroll
  for (int mt = 0; mt < kMTiles; ++mt) {
#pragma unroll
    for (int hh = 0; hh < (kLearned ? 1 : 2); ++hh) {
      const float d1 = kLearned ? st.d1[mt][0] : plx_quad_sum(st.d1[mt][hh]);
      const float centre = kLearned ? st.c[mt] : 0.f;
      float rq = 0.f;
      if (kLearned && kAmplified) {  // r.q of this row: the quad splits the head dim
        const int row = mt * 16 + g;
        float part = 0.f;
        for (int d = lane & 3; d < kHeadDim; d += 4)
          part += plx_to_float(s_qr_warp[plx_swz_elem(row, d)]) *
                  plx_to_float(s_qr_warp[plx_swz_elem(row + 8, d)]);
        rq = plx_quad_sum(part);
      }
      const int u = kLearned ? mt * 8 + g : mt * 16 + g + 8 * hh;
      const int qi = wrow0 + u;
      if (u < kUnits && qi < seq.lq) {
        if ((lane & 3) == 0 && (p.lse || p.tbar))  // the centre is tbar
          store_row_stats(p, stats_row0(p, b, h) + qi, st.m[mt][hh], d1, centre);
        plx_e16* o = seq.out + (long long)qi * p.o_stride_l;
#pragma unroll
        for (int n = 0; n < kHeadDim / 8; ++n) {
          const float x0 = finalize(st.o[mt][n][2 * hh], kLearned ? st.o[mt][n][2] : 0.f, d1, 0.f, centre, rq, p.eps);
          const float x1 = finalize(st.o[mt][n][2 * hh + 1], kLearned ? st.o[mt][n][3] : 0.f, d1, 0.f, centre, rq, p.eps);
          *reinterpret_cast<plx_u32*>(o + n * 8 + c) = plx_pack2(x0, x1);
        }
        if (p.vbar) {  // the softmax output O1/d1 (finalize's vbar; zeros without a visible key)
          plx_e16* vb = vbar_row(p, b, h, qi);
          const float inv = d1 == 0.f ? 0.f : 1.f / d1;
#pragma unroll
          for (int n = 0; n < kHeadDim / 8; ++n)
            *reinterpret_cast<plx_u32*>(vb + n * 8 + c) =
                plx_pack2(st.o[mt][n][2 * hh] * inv, st.o[mt][n][2 * hh + 1] * inv);
        }
      }
    }
  }
}
