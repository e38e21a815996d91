// plx_decode on sm_90a. CTA (split, kv head x head pack, batch) owns kHeadsPerCta query heads
// of one GQA group and one split of the key range, as in the decode family; K/V tiles arrive
// by bulk copies into a kStages-deep ring (kv_bulk.cuh) and every warp takes kKeysPerWarp
// keys of each tile on the mma.sync core (mma_core.cuh). The warps merge in shared memory;
// the splits merge inside the cluster (kClusterMerge) or in plx_decode_merge.
// Needs: decode_common.cuh, mma_core.cuh, kv_bulk.cuh, cluster_merge.cuh, make_kv_source;
// kMTiles, kKeysPerWarp, kSmemRingOffset, kSmemBars, kSmemPub, kClusterMerge (generator).

static_assert(kSmemPub + (kRqFloats + (kClusterMerge ? kPubFloats : 0)) * 4 <= kSmemBytes,
              "r.q and the published partial fit the dynamic shared memory");

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
      if (u >= kUnits) continue;
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

// ---- the decode kernel (sm_90a: bulk-copy ring, cluster or kernel split merge) ----------
extern "C" __global__ void __launch_bounds__(kThreads, 1) plx_decode(const PlxDecodeParams p) {
  extern __shared__ __align__(128) unsigned char smem[];
  plx_e16* s_qr = reinterpret_cast<plx_e16*>(smem);  // [kMTiles*16][kRowPitch]
  const BulkRing ring{reinterpret_cast<plx_e16*>(smem + kSmemRingOffset), reinterpret_cast<plx_u64*>(smem + kSmemBars)};
  float* s_rq = reinterpret_cast<float*>(smem + kSmemPub);  // [kUnits], then the published partial
  const DecodeCta cta = decode_cta();
  const int warp = threadIdx.x >> 5;

  load_qr(p, cta, s_qr);
  if (threadIdx.x == 0) init_ring(ring);
  __syncthreads();  // the barriers are initialised before anyone waits on them

  // phase: scores -> online softmax -> accumulate, tile by tile
  int k_begin, k_end;
  split_range(p, cta.b, cta.split, k_begin, k_end);
  const int num_tiles = k_begin < k_end ? (k_end - k_begin + kBlockN - 1) / kBlockN : 0;
  const int key0 = warp * kKeysPerWarp;  // this warp's rows of every tile
  WarpState st;
  stream_kv_bulk(ring, make_kv_source(p, cta.b, cta.kvh), k_begin, k_end, num_tiles, [&] {
    // PDL: the merge grid may be scheduled once every CTA has its first tiles in flight (see
    // the decode family); the cluster merge has no dependent.
    if (!kClusterMerge) plx_pdl_launch_dependents();
    state_init(st);
    plx_cp_async_wait<0>();  // this thread's q/r chunks; the loop's first barrier shows everyone's
  }, [&](int t) {
    float s[kMTiles][kKeysPerWarp / 8][4];
    scores<kKeysPerWarp>(s, s_qr, ring.k(t), key0, p.scale_log2);
    const int valid = k_end - (k_begin + t * kBlockN + key0);
    if (valid < kKeysPerWarp)
      mask_scores<kKeysPerWarp>(s, [&](int, int key) { return key < valid; });
    online_softmax<kKeysPerWarp>(s, st);
    accumulate<kKeysPerWarp>(s, st, ring.v(t), key0);
  });

  probe_dot_query(s_qr, s_rq);

  // phase: merge -- each warp's partial state in the (now idle) K/V ring, then the CTA's
  float* merge_o = reinterpret_cast<float*>(smem + kSmemRingOffset);
  float* merge_st = merge_o + kWarps * kUnits * 2 * kHeadDim;
  publish_warp_state(st, merge_o, merge_st);
  __syncthreads();
  if constexpr (kClusterMerge) {
    float* pub = s_rq + kRqFloats;
    publish_partial(merge_o, merge_st, pub);
    cluster_merge_and_store(p, s_rq, pub, cta.b, cta.h0);
  } else {
    merge_and_store(p, merge_o, merge_st, s_rq, cta.b, cta.h0, cta.split);
  }
}
