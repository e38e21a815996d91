// plx_decode on sm_90a. CTA (split, kv head x head pack, batch) owns kHeadsPerCta query heads
// of one GQA group and one split of the key range, as in the decode family; K/V tiles arrive
// by bulk copies into a kStages-deep ring (kv_bulk.cuh) and every warp takes kKeysPerWarp
// keys of each tile on the mma.sync core (mma_core.cuh). The warps merge in shared memory;
// the splits merge inside the cluster (kClusterMerge) or in plx_decode_merge.
// Needs: decode_common.cuh, mma_core.cuh, mma_phases.cuh (decode), kv_bulk.cuh, cluster_merge.cuh, make_kv_source;
// kMTiles, kKeysPerWarp, kSmemRingOffset, kSmemBars, kSmemPub, kClusterMerge (generator).

static_assert(kSmemPub + (kRqFloats + (kClusterMerge ? kPubFloats : 0)) * 4 <= kSmemBytes,
              "r.q and the published partial fit the dynamic shared memory");

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
