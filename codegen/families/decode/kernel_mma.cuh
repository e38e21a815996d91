// plx_decode on the tensor cores. CTA (split, kv head x head pack, batch) owns kHeadsPerCta
// query heads of one GQA group and one split of the key range. Every tile of kBlockN keys is
// shared by all warps; warp w takes keys [w*kKeysPerWarp, (w+1)*kKeysPerWarp) of it with its
// own online-softmax state, and the warps merge in shared memory at the end.
// Needs: decode_common.cuh, fused_merge.cuh, mma_core.cuh, mma_phases.cuh, kv_pipeline.cuh, make_kv_source;
// kMTiles, kKeysPerWarp, kSmemRingOffset, kFusedMerge (generator).

// ---- the decode kernel (mma.sync path) ---------------------------------------------------
extern "C" __global__ void __launch_bounds__(kThreads) plx_decode(const PlxDecodeParams p) {
  extern __shared__ __align__(128) unsigned char smem[];
  plx_e16* s_qr = reinterpret_cast<plx_e16*>(smem);  // [kMTiles*16][D]
  const KvRing ring{reinterpret_cast<plx_e16*>(smem + kSmemRingOffset)};
  __shared__ float s_rq[kUnits];
  const DecodeCta cta = decode_cta();
  const int warp = threadIdx.x >> 5;
  if (kTestFault) test_fault();

  load_qr(p, cta, s_qr);  // the stacked [q; r] A operand

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

  // phase: r.q per head (amplified affine only), then each warp publishes its partial state
  // in the (now free) K/V ring for the merge
  probe_dot_query(s_qr, s_rq);
  float* merge_o = reinterpret_cast<float*>(ring.base);
  float* merge_st = merge_o + kWarps * kUnits * 2 * kHeadDim;
  publish_warp_state(st, merge_o, merge_st);
  __syncthreads();
  merge_and_store(p, merge_o, merge_st, s_rq, cta.b, cta.h0, cta.split);
  if (kFusedMerge && p.num_splits > 1) fused_split_merge(p, s_rq, cta.b, cta.h0, reinterpret_cast<float*>(smem));
}
