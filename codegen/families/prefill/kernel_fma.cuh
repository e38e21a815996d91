// plx_prefill on scalar FMAs: the CTA geometry of the mma path; each warp keeps its rows' q
// and r in fp32 shared memory and walks every tile in blocks of 32 keys (lane = key).
// Needs: sequence.cuh, fma_core.cuh, tile_loader.cuh; kBlockM, kUnits, kSmemRingOffset
// (generator); kRows, kDPerLane (fma_core.cuh).

// ---- the prefill kernel (scalar FMA path) ----------------------------------------
extern "C" __global__ void __launch_bounds__(kThreads) plx_prefill(const PlxPrefillParams p) {
  extern __shared__ __align__(128) unsigned char smem[];
  plx_e16* s_ring = reinterpret_cast<plx_e16*>(smem + kSmemRingOffset);  // kStages x (K, V)
  const int h = blockIdx.y, b = blockIdx.z;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const Sequence seq = make_sequence(p, b, h);
  const int row0 = (gridDim.x - 1 - blockIdx.x) * kBlockM;  // longest rows first
  if (row0 >= seq.lq) return;
  const int wrow0 = row0 + warp * kUnits;  // this warp's first query row
  const int row_last = min(seq.lq, row0 + kBlockM) - 1;
  const int off = seq.lk - seq.lq;
  const int hi = min(seq.lk, off + row_last + 1);
  const int lo = (kWindow && p.window > 0) ? max(0, off + row0 - p.window + 1) : 0;
  const int num_tiles = hi > lo ? (hi - lo + kBlockN - 1) / kBlockN : 0;

  // phase: load q and r of this warp's rows as fp32
  float* s_q = reinterpret_cast<float*>(smem) + warp * (kRows * kHeadDim + kRows * 32);
  float* s_p = s_q + kRows * kHeadDim;
  load_qr_fp32(s_q, warp * 32, 32, [&](int row) -> const plx_e16* {
    const int u = row % kUnits, qi = wrow0 + u;
    if (qi >= seq.lq) return nullptr;
    return row >= kUnits ? seq.r + (long long)qi * p.r_stride_l : seq.q + (long long)qi * p.q_stride_l;
  });
  __syncwarp();

  auto stage_k = [&](int t) { return s_ring + (t % kStages) * 2 * kBlockN * kHeadDim; };
  auto stage_v = [&](int t) { return stage_k(t) + kBlockN * kHeadDim; };
#pragma unroll
  for (int t = 0; t < kStages - 1; ++t) {
    if (t < num_tiles) load_kv_tile(stage_k(t), stage_v(t), seq.kv, KvSource::Pages{}, lo + t * kBlockN, hi);
    plx_cp_async_commit();
  }
  WarpState st;
  state_init(st);
  for (int t = 0; t < num_tiles; ++t) {
    const int tn = t + kStages - 1;
    if (tn < num_tiles) load_kv_tile(stage_k(tn), stage_v(tn), seq.kv, KvSource::Pages{}, lo + tn * kBlockN, hi);
    plx_cp_async_commit();
    plx_cp_async_wait<kStages - 1>();
    __syncthreads();
    const int t0 = lo + t * kBlockN;
    // Only tiles on the causal diagonal, the window edge or the sequence end need a mask.
    const bool edge = t0 + kBlockN > min(seq.lk, off + row0 + 1) ||
                      (kWindow && p.window > 0 && t0 <= off + row_last - p.window);

#pragma unroll 1
    for (int kb = 0; kb < kBlockN; kb += 32) {
      attend_block(st, s_q, stage_k(t), stage_v(t), kb, s_p, p.scale_log2, [&](int u, int key) {
        return !edge || visible_key(p, seq, wrow0 + u, t0 + kb + key);
      });
    }
    __syncthreads();
  }
  plx_cp_async_wait<0>();
  __syncthreads();

  // phase: store -- lane writes its head-dim slice of every row
#pragma unroll
  for (int u = 0; u < kUnits; ++u) {
    float part = 0.f;
    if (kLearned && kAmplified)
      for (int d = lane; d < kHeadDim; d += 32)
        part += s_q[u * kHeadDim + d] * s_q[(kUnits + u) * kHeadDim + d];
    const float rq = plx_warp_sum(part);
    const int qi = wrow0 + u;
    if (qi < seq.lq) {
      plx_e16* o = seq.out + (long long)qi * p.o_stride_l + lane * kDPerLane;
#pragma unroll
      for (int e = 0; e < kDPerLane; ++e)
        o[e] = plx_from_float(finalize(st.o1[u][e], kLearned ? st.o2[u][e] : 0.f, st.d1[u], st.d2[u], 0.f, rq, p.eps));
    }
  }
}
