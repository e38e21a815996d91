// The K/V ring: kStages tiles of kBlockN keys in flight through cp.async groups, so the
// copy of tile t + kStages - 1 overlaps the math on tile t. Every family streams its key
// range through stream_kv; only the work on a resident tile differs.
// Needs: prelude.cuh, tile_loader.cuh (load_kv_tile), a KvSource; kStages, kBlockN,
// kHeadDim (generator).

// ---- phase: load (the K/V ring) --------------------------------------------------------
// Tile t lives in stage t % kStages: K, then V, each [kBlockN][kHeadDim] swizzled.
struct KvRing {
  plx_e16* base;
  __device__ __forceinline__ plx_e16* k(int t) const { return base + (t % kStages) * 2 * kBlockN * kHeadDim; }
  __device__ __forceinline__ plx_e16* v(int t) const { return k(t) + kBlockN * kHeadDim; }
};

// The first kStages - 1 tiles into the ring, a cp.async group each (empty past num_tiles).
__device__ __forceinline__ void fill_ring(const KvRing& ring, const KvSource& src, int k_begin, int k_end,
                                          int num_tiles, KvSource::Pages& pages) {
#pragma unroll
  for (int t = 0; t < kStages - 1; ++t) {
    if (t < num_tiles) {
      src.fetch(pages, k_begin + t * kBlockN, k_end);
      load_kv_tile(ring.k(t), ring.v(t), src, pages, k_begin + t * kBlockN, k_end);
    }
    plx_cp_async_commit();
  }
}

// Streams the num_tiles tiles of keys [k_begin, k_end) through the ring. started() runs once
// the first kStages - 1 tiles are in flight; tile(t) runs when tile t is resident, between
// two CTA barriers, so no copy overwrites a stage a warp still reads. Paged KV looks the page
// of each row up a tile ahead (KvSource::fetch), so the block-table load hides behind the
// math. Returns with every copy landed and the ring free for reuse.
template <typename Started, typename Tile>
__device__ __forceinline__ void stream_kv(const KvRing& ring, const KvSource& src, int k_begin, int k_end,
                                          int num_tiles, Started started, Tile tile) {
  KvSource::Pages pages;
  fill_ring(ring, src, k_begin, k_end, num_tiles, pages);
  if (kStages - 1 < num_tiles) src.fetch(pages, k_begin + (kStages - 1) * kBlockN, k_end);
  started();
  for (int t = 0; t < num_tiles; ++t) {
    const int tn = t + kStages - 1;
    if (tn < num_tiles) {
      load_kv_tile(ring.k(tn), ring.v(tn), src, pages, k_begin + tn * kBlockN, k_end);
      if (tn + 1 < num_tiles) src.fetch(pages, k_begin + (tn + 1) * kBlockN, k_end);  // a tile ahead
    }
    plx_cp_async_commit();
    plx_cp_async_wait<kStages - 1>();
    __syncthreads();
    tile(t);
    __syncthreads();
  }
  plx_cp_async_wait<0>();
  __syncthreads();
}

// stream_kv with one CTA barrier per tile: the copy into a stage is issued after the barrier
// that shows every warp done with that stage's previous tile (t - 1), so the second barrier
// goes and warps drift apart (one warp's softmax under another's MMAs). One stage has no
// second one to fill and keeps stream_kv.
template <typename Started, typename Tile>
__device__ __forceinline__ void stream_kv_one_barrier(const KvRing& ring, const KvSource& src, int k_begin,
                                                      int k_end, int num_tiles, Started started, Tile tile) {
  if constexpr (kStages < 2) {
    stream_kv(ring, src, k_begin, k_end, num_tiles, started, tile);
  } else {
    KvSource::Pages pages;
    fill_ring(ring, src, k_begin, k_end, num_tiles, pages);
    started();
    for (int t = 0; t < num_tiles; ++t) {
      const int tn = t + kStages - 1;
      // Paged KV: the block-table loads fly while the CTA waits at the barrier, and hold no
      // registers through the math (stream_kv keeps them a whole tile).
      if (tn < num_tiles) src.fetch(pages, k_begin + tn * kBlockN, k_end);
      plx_cp_async_wait<kStages - 2>();  // tile t landed (this thread's copies) ...
      __syncthreads();                   // ... everyone's, and stage (t - 1) % kStages is free
      if (tn < num_tiles) load_kv_tile(ring.k(tn), ring.v(tn), src, pages, k_begin + tn * kBlockN, k_end);
      plx_cp_async_commit();
      tile(t);
    }
    plx_cp_async_wait<0>();
    __syncthreads();
  }
}
