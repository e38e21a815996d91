// plx_decode on scalar FMAs: the same CTA geometry as the mma path; each warp walks its keys
// of a tile in blocks of 32 (lane = key) and keeps fp32 q/r rows in shared memory.
// Needs: decode_common.cuh, fused_merge.cuh, fma_core.cuh, kv_pipeline.cuh, make_kv_source;
// kKeysPerWarp, kSmemRingOffset, kFusedMerge (generator); kRows, kDPerLane (fma_core.cuh).

// ---- the decode kernel (scalar FMA path) -------------------------------------------------
extern "C" __global__ void __launch_bounds__(kThreads) plx_decode(const PlxDecodeParams p) {
  extern __shared__ __align__(128) unsigned char smem[];
  float* s_q = reinterpret_cast<float*>(smem);  // [kRows][D] fp32
  float* s_p = s_q + kRows * kHeadDim;          // [kWarps][kRows][32]
  const KvRing ring{reinterpret_cast<plx_e16*>(smem + kSmemRingOffset)};
  __shared__ float s_rq[kUnits];
  const DecodeCta cta = decode_cta();
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  if (kTestFault) test_fault();

  // phase: load q and r rows as fp32
  load_qr_fp32(s_q, 0, kThreads, [&](int row) {
    return qr_row(p, cta.b, cta.h0, row % kUnits, row >= kUnits);
  });

  // phase: scores -> online softmax -> accumulate, 32 keys at a time
  int k_begin, k_end;
  split_range(p, cta.b, cta.split, k_begin, k_end);
  const int num_tiles = k_begin < k_end ? (k_end - k_begin + kBlockN - 1) / kBlockN : 0;
  WarpState st;
  stream_kv(ring, make_kv_source(p, cta.b, cta.kvh), k_begin, k_end, num_tiles, [&] {
    if (!kFusedMerge) plx_pdl_launch_dependents();  // see the mma path
    state_init(st);
  }, [&](int t) {
#pragma unroll 1
    for (int kb = 0; kb < kKeysPerWarp; kb += 32) {
      const int kr0 = warp * kKeysPerWarp + kb;
      const int valid = k_end - (k_begin + t * kBlockN + kr0);
      attend_block(st, s_q, ring.k(t), ring.v(t), kr0, s_p + warp * kRows * 32, p.scale_log2,
                   [&](int, int key) { return key < valid; });
    }
  });

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
  float* merge_o = reinterpret_cast<float*>(ring.base);
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
  merge_and_store(p, merge_o, merge_st, s_rq, cta.b, cta.h0, cta.split);
  if (kFusedMerge && p.num_splits > 1) fused_split_merge(p, s_rq, cta.b, cta.h0, reinterpret_cast<float*>(smem));
}
