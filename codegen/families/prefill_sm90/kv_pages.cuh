// The sm_90a family's K/V from a paged cache [num_pages, page_size, Hkv, D] (extend): the
// TMA maps span the pool as {D, Hkv, slot, page}, and a box of kPageBox = gcd(page_size,
// kBlockN) keys never crosses a page, so a K or V tile is kBlockN / kPageBox boxes per
// 64-column chunk, each at the page its block-table entry names.
// Needs: kernel.cuh (Sm90Smem), sequence.cuh, kv_paged.cuh (KvSource.pages, sequence_kv's
// lk = seqused_k[b]); kPageSize (generator), kPageBox (family constants).

constexpr int kBoxes = kBlockN / kPageBox;
static_assert(kBlockN % kPageBox == 0 && kPageSize % kPageBox == 0 && kPageBox % 8 == 0,
              "boxes tile both the key tile and the page, in whole 8-row swizzle atoms");

// Tiles start on a box boundary: a window's first key is rounded down (the keys before it
// are masked like any other invisible key).
__device__ __forceinline__ QueryTile kv_query_tile(const PlxPrefillParams& p, const Sequence& seq, int row0) {
  QueryTile q = query_tile(p, seq, row0);
  if (q.num_tiles > 0 && q.lo % kPageBox != 0) {
    q.lo -= q.lo % kPageBox;
    q.num_tiles = (q.hi - q.lo + kBlockN - 1) / kBlockN;
  }
  return q;
}

// The producer warp's lane u looks up and loads box u of each tile: the lookups of a tile
// fly together, before the warp waits for the stage, and the boxes' loads issue from as many
// lanes (one thread issuing 2 x kBoxes x kDChunks loads a tile fell behind the consumers at
// pages of 16). A box wholly past the sequence's keys goes to page -1: TMA fills it with
// zeros and still counts its bytes.
static_assert(kBoxes <= 32, "one producer lane a box");
__device__ __forceinline__ void produce_kv(const PlxPrefillTmaParams& P, const Sm90Smem& sm, const Sequence& seq,
                                           const QueryTile& qt, int, int kvh, int it) {
  const int lane = threadIdx.x & 31;
#pragma unroll 1
  for (int t = 0; t < qt.num_tiles; ++t) {
    const int stage = (it + t) % kStages;
    const int parity = (((it + t) / kStages) & 1) ^ 1;
    const int key = qt.lo + t * kBlockN + lane * kPageBox;  // box `lane`'s first key
    const int page = lane < kBoxes && key < seq.lk ? seq.kv.pages[key / kPageSize] : -1;
    const int slot = key % kPageSize;
    plx_mbar_wait(sm.k_empty(stage), parity);
    if (lane == 0) plx_mbar_arrive_expect_tx(sm.k_full(stage), kTileBytes);
    __syncwarp();  // the stage's bytes are expected before any box lands
    if (lane < kBoxes)
      for (int c = 0; c < kDChunks; ++c)
        plx_tma_load_4d(sm.k(stage) + (c * kBlockN + lane * kPageBox) * 64, &P.tk, sm.k_full(stage), c * 64, kvh,
                        slot, page);
    plx_mbar_wait(sm.v_empty(stage), parity);
    if (lane == 0) plx_mbar_arrive_expect_tx(sm.v_full(stage), kTileBytes);
    __syncwarp();
    if (lane < kBoxes)
      for (int c = 0; c < kDChunks; ++c)
        plx_tma_load_4d(sm.v(stage) + (c * kBlockN + lane * kPageBox) * 64, &P.tv, sm.v_full(stage), c * 64, kvh,
                        slot, page);
  }
}

// The box holding a sequence's last key also brings the page's slots after it: stale values,
// maybe NaN, which a zero weight does not cancel (the probe's p2 = p1 s2 and P V multiply
// them). A consumer warpgroup clears those rows of the tile it is about to read (both
// warpgroups write the same zeros), then orders its stores before the MMA's reads. Whole
// 128-byte rows of each chunk: the swizzle only permutes 16-byte pieces inside a row.
__device__ __forceinline__ void clear_kv_tail(const Sequence& seq, plx_e16* tile, int t0, int cw) {
  const int tail = seq.lk - t0;  // the tile's keys inside the sequence
  if (tail >= kBlockN || tail % kPageBox == 0) return;
  const int rows = kPageBox - tail % kPageBox;
  plx_u32* words = reinterpret_cast<plx_u32*>(tile);
  for (int i = threadIdx.x % 128; i < kDChunks * rows * 32; i += 128) {
    const int c = i / (rows * 32), row = tail + i / 32 % rows;
    words[(c * kBlockN + row) * 32 + i % 32] = 0u;
  }
  plx_fence_proxy_async();
  plx_named_bar_sync(3 + cw, 128);
}
