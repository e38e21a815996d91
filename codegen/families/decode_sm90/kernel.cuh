// plx_decode on sm_90a. CTA (split, kv head x head pack, batch) owns kHeadsPerCta query heads
// of one GQA group and one split of the key range, as in the decode family; K/V tiles arrive
// by TMA into a kStages-deep ring (kv_tma.cuh) and every warp takes kKeysPerWarp keys of each
// tile on the mma.sync core, addressed once per lane (warp_tile.cuh). The warps merge in
// shared memory; the splits merge inside the cluster (kClusterMerge, cluster_merge.cuh) or in
// plx_decode_merge, which takes P.p.
// With kTokens > 1 (multi-token decode) the units are kHeadsPerCta heads x kTokens tokens,
// all reading each K/V tile once; tokens differ only in their masks (token_sees).
// K/V may be paged: boxes of kPageBox keys then start every tile, so a window's keys before
// its first visible one are read, masked and cleared like those past a split's end.
// Needs: decode_common.cuh, mma_core.cuh, mma_phases.cuh (decode), kv_tma.cuh, warp_tile.cuh,
// cluster_merge.cuh; kMTiles, kKeysPerWarp, kSmemRingOffset, kSmemBars, kSmemPub, kClusterMerge,
// kMergeShare, kMsgFloats (generator).

static_assert(kSmemPub + (kRqFloats + (kClusterMerge ? kClusterSplits * kMsgFloats : 0)) * 4 <= kSmemBytes,
              "r.q and the cluster merge's inbox fit the dynamic shared memory");
static_assert(!kClusterMerge || kSmemOutbox + kClusterSplits * kMsgFloats * 4 <= kSmemBars,
              "the outbox fits the idle ring after the cross-warp merge");

static_assert(kMTiles * 16 <= kBlockN, "the [q; r] rows fit the swizzled layout of a tile's rows");

// Multi-token decode: token t of kTokens sees keys before len - (kTokens - 1 - t), and under
// a window W the last W of those; the split covers the union (split_keys), so the keys where
// tokens differ -- the last kTokens - 1 and, windowed, the first kTokens - 1 -- are masked per row.
__device__ __forceinline__ bool token_sees(const PlxDecodeParams& p, const SplitKeys& keys, int t, int key) {
  const int end = keys.len - (kTokens - 1 - t);
  return key < end && !(kWindow && p.window > 0 && key < end - p.window);
}
__device__ __forceinline__ bool tokens_differ(const PlxDecodeParams& p, const SplitKeys& keys, int k0) {
  return k0 + kKeysPerWarp > keys.len - (kTokens - 1) || (kWindow && p.window > 0 && k0 < keys.len - p.window);
}

// ---- the decode kernel (sm_90a: TMA ring, cluster or kernel split merge) -----------------
extern "C" __global__ void __launch_bounds__(kThreads, 1) plx_decode(const __grid_constant__ PlxDecodeTmaParams P) {
  // The 128-byte swizzle wants 1024-byte aligned boxes; kSmemBytes has the slack. Every CTA
  // rounds the same window offset, so cluster peers agree on the layout.
  extern __shared__ unsigned char smem_raw[];
  const plx_u32 raw = plx_smem_addr(smem_raw);
  unsigned char* smem = smem_raw + ((raw + 1023) / 1024 * 1024 - raw);
  const PlxDecodeParams& p = P.p;
  plx_e16* s_qr = reinterpret_cast<plx_e16*>(smem);  // rows 0..kMTiles*16 of a tile's layout
  const TmaRing ring{reinterpret_cast<plx_e16*>(smem + kSmemRingOffset), reinterpret_cast<plx_u64*>(smem + kSmemBars)};
  float* s_rq = reinterpret_cast<float*>(smem + kSmemPub);  // [kUnits], then the cluster merge's inbox
  const ClusterMerge cm{reinterpret_cast<float*>(smem + kSmemOutbox), s_rq + kRqFloats,
                        reinterpret_cast<plx_u64*>(smem + kSmemBars) + kStages};
  const DecodeCta cta = decode_cta();
  const int warp = threadIdx.x >> 5;

  if (threadIdx.x == 0) {
    plx_tma_prefetch_map(&P.tk);
    plx_tma_prefetch_map(&P.tv);
  }
  load_qr(p, cta, s_qr);
  if (threadIdx.x == 0) {
    init_ring(ring);
    if constexpr (kClusterMerge) cluster_merge_init(cm);
  }
  __syncthreads();  // the barriers are initialised before anyone waits on them
  if constexpr (kClusterMerge) plx_cluster_arrive_relaxed();  // peers may send once they see it

  // phase: scores -> online softmax -> accumulate, tile by tile
  const SplitKeys keys = split_keys<kPagedKv ? kPageBox : 1>(p, cta.b, cta.split);  // paged: tiles start on a box
  const int k_begin = keys.begin, k_end = keys.end;
  const int num_tiles = k_begin < k_end ? (k_end - k_begin + kBlockN - 1) / kBlockN : 0;
  const int key0 = warp * kKeysPerWarp;  // this warp's rows of every tile
  const LaneAddr la = lane_addr(key0);
  const plx_u32 sqr = plx_smem_addr(s_qr), ring_base = plx_smem_addr(ring.base);
  QrFrags qa;
  WarpState st;
  const int* pages = kPagedKv ? p.block_table + (long long)cta.b * p.block_table_stride : nullptr;
  stream_kv_tma(ring, KvTma{&P.tk, &P.tv, cta.kvh, cta.b, pages, keys.len}, k_begin, num_tiles, [&] {
    // PDL: the merge grid may be scheduled once every CTA has its first tiles in flight (see
    // the decode family); the cluster merge has no dependent.
    if (!kClusterMerge) plx_pdl_launch_dependents();
    state_init(st);
    plx_cp_async_wait<0>();  // this thread's q/r chunks
    __syncthreads();         // everyone's
    hoist_qr(qa, sqr, la);
  }, [&](int t) {
    const int k0 = k_begin + t * kBlockN + key0;  // this warp's first key of the tile
    const int lead = keys.first - k0, valid = k_end - k0;  // its keys [lead, valid) are visible
    const bool partial = lead > 0 || valid < kKeysPerWarp;
    if (partial) clear_rows_outside(ring.k(t), ring.v(t), key0, lead, valid);
    const plx_u32 ktile = ring_base + (t % kStages) * 2 * kTileBytes;
    float s[kMTiles][kKeysPerWarp / 8][4];
    tile_scores<kKeysPerWarp>(s, qa, sqr, ktile, la, p.scale_log2);
    if constexpr (kTokens > 1) {
      if (partial || tokens_differ(p, keys, k0))
        mask_scores<kKeysPerWarp>(s, [&](int unit, int key) {
          return key >= lead && key < valid && token_sees(p, keys, unit_token(unit), k0 + key);
        });
    } else if (partial) {
      mask_scores<kKeysPerWarp>(s, [&](int, int key) { return key >= lead && key < valid; });
    }
    tile_softmax<kKeysPerWarp>(s, st);
    tile_accumulate<kKeysPerWarp>(s, st, ktile + kTileBytes, la);
  });

  probe_dot_query(s_qr, s_rq);

  // phase: merge -- each warp's partial state in the (now idle) K/V ring, then the CTA's
  float* merge_o = reinterpret_cast<float*>(smem + kSmemRingOffset);
  float* merge_st = merge_o + kWarps * kUnits * 2 * kHeadDim;
  publish_warp_state(st, merge_o, merge_st);
  __syncthreads();
  if constexpr (kClusterMerge) {
    fill_outbox(merge_o, merge_st, cm.outbox);
    cluster_merge_and_store(p, cm, s_rq, cta.b, cta.h0);
  } else {
    merge_and_store(p, merge_o, merge_st, s_rq, cta.b, cta.h0, cta.split);
  }
}
