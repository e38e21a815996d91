// The sm_90a decode K/V ring: kStages tiles of kBlockN keys, each K and V row brought in by
// one bulk asynchronous copy (cp.async.bulk) that completes on the stage's mbarrier. No
// tensor map: a row's address is all a copy needs, so the same loop serves any row stride
// (and, later, any page). Rows land unswizzled with a 16-byte pad (kRowPitch), so the 8 row
// addresses of one ldmatrix fall in 8 different bank groups as the swizzle would make them.
// Needs: prelude.cuh, async.cuh (sm90), kv_contiguous.cuh (common: KvSource); kHeadDim,
// kBlockN, kStages, kRowPitch (generator).

// ---- shared-memory layout: padded rows (mma_core.cuh addresses tiles through plx_swz) ---
// Element offset of 16-byte chunk `chunk` of row `row` in a [rows][kRowPitch] tile.
__device__ __forceinline__ int plx_swz(int row, int chunk) { return row * kRowPitch + (chunk << 3); }
__device__ __forceinline__ int plx_swz_elem(int row, int d) { return row * kRowPitch + d; }

constexpr int kRowBytes = kHeadDim * 2;                 // one K or V row in global memory
constexpr int kTileElems = kBlockN * kRowPitch;         // one K or V tile in shared memory
constexpr int kTileTxBytes = 2 * kBlockN * kRowBytes;  // what one stage's barrier waits for
// The generator's cp.async split of a tile over the CTA (kRowsPerThread) is not used: one
// warp issues whole-row bulk copies.
static_assert(kRowsPerThread * kRowsPerPass >= kBlockN, "the generator's copy split covers a tile");
static_assert(kRowBytes % 16 == 0 && (kRowPitch * 2) % 16 == 0, "bulk copies move 16-byte multiples");

// ---- phase: load (the bulk-copy ring) ---------------------------------------------------
// Tile t lives in stage t % kStages (K, then V) and completes phase t / kStages of full[t % kStages].
struct BulkRing {
  plx_e16* base;
  plx_u64* full;  // [kStages], one arrival (the issuing lane) plus the tile's bytes
  __device__ __forceinline__ plx_e16* k(int t) const { return base + (t % kStages) * 2 * kTileElems; }
  __device__ __forceinline__ plx_e16* v(int t) const { return k(t) + kTileElems; }
  __device__ __forceinline__ plx_u64* bar(int t) const { return full + t % kStages; }
};

// One thread, before any copy: the barriers, and the fence that shows them to the async proxy.
__device__ __forceinline__ void init_ring(const BulkRing& ring) {
#pragma unroll
  for (int s = 0; s < kStages; ++s) plx_mbar_init(ring.full + s, 1);
  plx_mbar_init_fence();
}

// One warp copies tile t (keys k0..k0 + kBlockN): lane 0 announces the stage's bytes first,
// then every lane copies whole rows. Rows past k_end repeat the last key (finite data the
// mask hides), so every tile is the same number of bytes and nothing needs clearing.
__device__ __forceinline__ void issue_tile(const BulkRing& ring, const KvSource& src, int t, int k0, int k_end) {
  const int lane = threadIdx.x & 31;
  if (lane == 0) plx_mbar_arrive_expect_tx(ring.bar(t), kTileTxBytes);
  __syncwarp();
  KvSource::Pages none;
#pragma unroll 1
  for (int row = lane; row < kBlockN; row += 32) {
    const plx_e16* gk;
    const plx_e16* gv;
    src.rows(none, 0, min(k0 + row, k_end - 1), gk, gv);
    plx_bulk_load(ring.k(t) + row * kRowPitch, gk, kRowBytes, ring.bar(t));
    plx_bulk_load(ring.v(t) + row * kRowPitch, gv, kRowBytes, ring.bar(t));
  }
}

// Streams the num_tiles tiles of keys [k_begin, k_end) through the ring: kStages - 1 tiles
// ahead of the math. Warp 0 issues; at the top of iteration t one CTA barrier shows every
// warp done with tile t - 1, whose stage then takes tile t + kStages - 1. started() runs once
// the first tiles are in flight; tile(t) once tile t has landed. Returns with the ring idle.
template <typename Started, typename Tile>
__device__ __forceinline__ void stream_kv_bulk(const BulkRing& ring, const KvSource& src, int k_begin, int k_end,
                                               int num_tiles, Started started, Tile tile) {
  if (threadIdx.x < 32)
    for (int t = 0; t < kStages - 1 && t < num_tiles; ++t) issue_tile(ring, src, t, k_begin + t * kBlockN, k_end);
  started();
#pragma unroll 1
  for (int t = 0; t < num_tiles; ++t) {
    const int tn = t + kStages - 1;
    __syncthreads();
    if (threadIdx.x < 32 && tn < num_tiles) issue_tile(ring, src, tn, k_begin + tn * kBlockN, k_end);
    plx_mbar_wait(ring.bar(t), (t / kStages) & 1);
    tile(t);
  }
  __syncthreads();
}
