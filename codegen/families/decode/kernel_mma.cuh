// plx_decode on the tensor cores. CTA (split, kv head x head pack, batch) owns kHeadsPerCta
// query heads of one GQA group and one split of the key range. Every tile of kBlockN keys is
// shared by all warps; warp w takes keys [w*kKeysPerWarp, (w+1)*kKeysPerWarp) of it with its
// own online-softmax state, and the warps merge in shared memory at the end. With more than
// one split the CTA writes (m, d1, d2, O1, O2) partials for plx_decode_merge (or, fused, the
// last CTA of the group merges them).
// Needs: decode_common.cuh, fused_merge.cuh, mma_core.cuh, tile_loader.cuh, make_kv_source;
// kMTiles, kKeysPerWarp, kSmemRingOffset, kFusedMerge (generator).

// ---- the decode kernel (mma.sync path) ---------------------------------------------------
extern "C" __global__ void __launch_bounds__(kThreads) plx_decode(const PlxDecodeParams p) {
  extern __shared__ __align__(128) unsigned char smem[];
  plx_e16* s_qr = reinterpret_cast<plx_e16*>(smem);                     // [kMTiles*16][D]
  plx_e16* s_ring = reinterpret_cast<plx_e16*>(smem + kSmemRingOffset); // kStages x (K, V)
  __shared__ float s_rq[kUnits];
  const int split = blockIdx.x, b = blockIdx.z;
  const int kvh = blockIdx.y / kCtasPerGroup;
  const int h0 = kvh * kGroup + (blockIdx.y % kCtasPerGroup) * kHeadsPerCta;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  if (kTestFault) test_fault();

  // phase: load q and r as the stacked A operand (zero rows pad the tile)
  for (int i = threadIdx.x; i < kMTiles * 16 * kChunks; i += kThreads) {
    const int row = i / kChunks, c = i % kChunks;
    const int u = kLearned ? (row / 16) * 8 + (row & 7) : row;
    const plx_e16* g = qr_row(p, b, h0, u, kLearned && (row & 8));
    plx_cp_async16(s_qr + plx_swz(row, c), g ? g + c * 8 : static_cast<const plx_e16*>(p.q), g != nullptr);
  }
  plx_cp_async_commit();

  int k_begin, k_end;
  split_range(p, b, split, k_begin, k_end);
  const int num_tiles = k_begin < k_end ? (k_end - k_begin + kBlockN - 1) / kBlockN : 0;
  const KvSource src = make_kv_source(p, b, kvh);
  auto stage_k = [&](int t) { return s_ring + (t % kStages) * 2 * kBlockN * kHeadDim; };
  auto stage_v = [&](int t) { return stage_k(t) + kBlockN * kHeadDim; };

  KvSource::Pages pages;
#pragma unroll
  for (int t = 0; t < kStages - 1; ++t) {
    if (t < num_tiles) {
      src.fetch(pages, k_begin + t * kBlockN, k_end);
      load_kv_tile(stage_k(t), stage_v(t), src, pages, k_begin + t * kBlockN, k_end);
    }
    plx_cp_async_commit();
  }
  if (kStages - 1 < num_tiles) src.fetch(pages, k_begin + (kStages - 1) * kBlockN, k_end);
  // PDL trigger, once this CTA's first tiles are in flight: the merge grid starts only when
  // every CTA has triggered, i.e. the last one is resident, so it never takes a slot the
  // main grid still needs, and its launch overlaps nearly the whole kernel; placed here the
  // trigger stays off the path to the first HBM requests. The fused merge has no dependent.
  if (!kFusedMerge) plx_pdl_launch_dependents();
  WarpState st;
  state_init(st);
  const int key0 = warp * kKeysPerWarp;  // this warp's rows of every tile
  for (int t = 0; t < num_tiles; ++t) {
    const int tn = t + kStages - 1;
    if (tn < num_tiles) {
      load_kv_tile(stage_k(tn), stage_v(tn), src, pages, k_begin + tn * kBlockN, k_end);
      if (tn + 1 < num_tiles) src.fetch(pages, k_begin + (tn + 1) * kBlockN, k_end);  // a tile ahead
    }
    plx_cp_async_commit();
    plx_cp_async_wait<kStages - 1>();
    __syncthreads();
    float s[kMTiles][kKeysPerWarp / 8][4];
    scores<kKeysPerWarp>(s, s_qr, stage_k(t), key0, p.scale_log2);
    const int valid = k_end - (k_begin + t * kBlockN + key0);
    if (valid < kKeysPerWarp)
      mask_scores<kKeysPerWarp>(s, [&](int, int key) { return key < valid; });
    online_softmax<kKeysPerWarp>(s, st);
    accumulate<kKeysPerWarp>(s, st, stage_v(t), key0);
    __syncthreads();
  }
  plx_cp_async_wait<0>();
  __syncthreads();

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
  float* merge_o = reinterpret_cast<float*>(s_ring);
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
  merge_and_store(p, merge_o, merge_st, s_rq, b, h0, split);
  if (kFusedMerge && p.num_splits > 1) fused_split_merge(p, s_rq, b, h0, reinterpret_cast<float*>(smem));
}
