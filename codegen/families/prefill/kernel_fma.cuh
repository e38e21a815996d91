// plx_prefill on scalar FMAs: the CTA geometry of the mma path; each warp keeps its rows' q
// and r in fp32 shared memory and walks every tile in blocks of 32 keys (lane = key).
// Needs: sequence.cuh, fma_core.cuh, kv_pipeline.cuh; kUnits, kSmemRingOffset (generator);
// kRows, kDPerLane (fma_core.cuh).

// ---- the prefill kernel (scalar FMA path) ------------------------------------------------
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

  // phase: load q and r of this warp's rows as fp32
  float* s_q = reinterpret_cast<float*>(smem) + warp * (kRows * kHeadDim + kRows * 32);
  float* s_p = s_q + kRows * kHeadDim;
  load_qr_fp32(s_q, warp * 32, 32, [&](int row) -> const plx_e16* {
    const int u = row % kUnits, qi = wrow0 + u;
    if (qi >= seq.lq) return nullptr;
    return row >= kUnits ? seq.r + (long long)qi * p.r_stride_l : seq.q + (long long)qi * p.q_stride_l;
  });
  __syncwarp();

  // phase: scores -> online softmax -> accumulate, 32 keys at a time
  WarpState st;
  stream_kv(ring, seq.kv, qt.lo, qt.hi, qt.num_tiles, [&] { state_init(st); }, [&](int t) {
    const int t0 = qt.lo + t * kBlockN;
    const bool edge = edge_tile(p, seq, qt, t0);
#pragma unroll 1
    for (int kb = 0; kb < kBlockN; kb += 32) {
      attend_block(st, s_q, ring.k(t), ring.v(t), kb, s_p, p.scale_log2, [&](int u, int key) {
        return !edge || visible_key(p, seq, wrow0 + u, t0 + kb + key);
      });
    }
  });

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
  // phase: vbar = O1/d1 (zeros without a visible key), after the outputs for the same reason;
  // b and h made opaque, or ptxas computes the row's address before the K/V loop and spills it
  if (p.vbar) {
    plx_e16* vb = vbar_row(p, plx_opaque(b), plx_opaque(h), wrow0) + lane * kDPerLane;
#pragma unroll
    for (int u = 0; u < kUnits; ++u) {
      if (wrow0 + u < seq.lq) {
        const float inv = st.d1[u] == 0.f ? 0.f : 1.f / st.d1[u];
#pragma unroll
        for (int e = 0; e < kDPerLane; ++e) vb[e] = plx_from_float(st.o1[u][e] * inv);
      }
      vb += p.vbar_stride_l;
    }
  }
  // phase: row statistics, once the outputs are out (inside that loop they cost more registers)
  if (lane == 0 && (p.lse || p.tbar)) {
    const long long row0 = stats_row0(p, b, h);
#pragma unroll
    for (int u = 0; u < kUnits; ++u)
      if (wrow0 + u < seq.lq)
        store_row_stats(p, row0 + wrow0 + u, st.m[u], st.d1[u], kLearned ? st.d2[u] / st.d1[u] : 0.f);
  }
}
