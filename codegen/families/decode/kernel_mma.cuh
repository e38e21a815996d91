// plx_decode on the tensor cores. CTA (split, kv head x head pack, batch) owns kHeadsPerCta
// query heads of one GQA group and one split of the key range. Every tile of kBlockN keys is
// shared by all warps; warp w takes keys [w*kKeysPerWarp, (w+1)*kKeysPerWarp) of it with its
// own online-softmax state, and the warps merge in shared memory at the end.
// Needs: decode_common.cuh, fused_merge.cuh, mma_core.cuh, kv_pipeline.cuh, make_kv_source;
// kMTiles, kKeysPerWarp, kSmemRingOffset, kFusedMerge (generator).

// ---- the decode kernel (mma.sync path) ---------------------------------------------------
extern "C" __global__ void __launch_bounds__(kThreads) plx_decode(const PlxDecodeParams p) {
  extern __shared__ __align__(128) unsigned char smem[];
  plx_e16* s_qr = reinterpret_cast<plx_e16*>(smem);  // [kMTiles*16][D]
  const KvRing ring{reinterpret_cast<plx_e16*>(smem + kSmemRingOffset)};
  __shared__ float s_rq[kUnits];
  const DecodeCta cta = decode_cta();
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  if (kTestFault) test_fault();

  // phase: load q and r as the stacked A operand (zero rows pad the tile)
  for (int i = threadIdx.x; i < kMTiles * 16 * kChunks; i += kThreads) {
    const int row = i / kChunks, c = i % kChunks;
    const int u = kLearned ? (row / 16) * 8 + (row & 7) : row;
    const plx_e16* g = qr_row(p, cta.b, cta.h0, u, kLearned && (row & 8));
    plx_cp_async16(s_qr + plx_swz(row, c), g ? g + c * 8 : static_cast<const plx_e16*>(p.q), g != nullptr);
  }
  plx_cp_async_commit();

  // phase: scores -> online softmax -> accumulate, tile by tile
  int k_begin, k_end;
  split_range(p, cta.b, cta.split, k_begin, k_end);
  const int num_tiles = k_begin < k_end ? (k_end - k_begin + kBlockN - 1) / kBlockN : 0;
  const int key0 = warp * kKeysPerWarp;  // this warp's rows of every tile
  WarpState st;
  stream_kv(ring, make_kv_source(p, cta.b, cta.kvh), k_begin, k_end, num_tiles, [&] {
    // PDL trigger, once this CTA's first tiles are in flight: the merge grid starts only
    // when every CTA has triggered, so it never takes a slot the main grid still needs, and
    // its launch overlaps nearly the whole kernel. The fused merge has no dependent.
    if (!kFusedMerge) plx_pdl_launch_dependents();
    state_init(st);
  }, [&](int t) {
    float s[kMTiles][kKeysPerWarp / 8][4];
    scores<kKeysPerWarp>(s, s_qr, ring.k(t), key0, p.scale_log2);
    const int valid = k_end - (k_begin + t * kBlockN + key0);
    if (valid < kKeysPerWarp)
      mask_scores<kKeysPerWarp>(s, [&](int, int key) { return key < valid; });
    online_softmax<kKeysPerWarp>(s, st);
    accumulate<kKeysPerWarp>(s, st, ring.v(t), key0);
  });

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
  float* merge_o = reinterpret_cast<float*>(ring.base);
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
  merge_and_store(p, merge_o, merge_st, s_rq, cta.b, cta.h0, cta.split);
  if (kFusedMerge && p.num_splits > 1) fused_split_merge(p, s_rq, cta.b, cta.h0, reinterpret_cast<float*>(smem));
}
