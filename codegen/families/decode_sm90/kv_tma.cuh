// The sm_90a decode K/V ring: kStages tiles of kBlockN keys; each K and each V tile is one
// TMA tensor-map copy per 64-column chunk of the head dim (kDChunks boxes of kBlockN rows x
// 128 bytes in the 128-byte swizzle) completing on the stage's mbarrier. One elected thread
// issues a stage; the maps (PlxDecodeTmaParams) are 4-D {D, Hkv, tokens, B} over the cache
// with tokens = p.seqlen, so a box never reaches another sequence or head: rows at or past
// seqlen arrive as zeros. A paged cache's maps span the pool as {D, Hkv, slot, page} and a
// tile is kBoxes boxes of kPageBox keys per chunk, each at its page, issued by warp 0's lanes.
// Needs: prelude.cuh, async.cuh (sm90); kHeadDim, kChunks, kBlockN, kStages, kKeysPerWarp,
// kDChunks, kTileBytes, kPageSize (0: contiguous), kPageBox (generator).

// ---- shared-memory layout: what TMA's 128-byte swizzle writes ---------------------------
// A tile is kDChunks chunks of [kBlockN rows][64 columns], each chunk 1024-byte aligned; in
// a 128-byte row the 16-byte piece j sits at j ^ (row % 8). The 8 rows one ldmatrix reads
// are 8 consecutive rows of one piece column, so they land in 8 different bank groups.
// mma_core.cuh addresses tiles (and the [q; r] rows, laid out alike) through these.
__device__ __forceinline__ int plx_swz(int row, int chunk) {
  return ((chunk >> 3) * kBlockN + row) * 64 + (((chunk & 7) ^ (row & 7)) << 3);
}
__device__ __forceinline__ int plx_swz_elem(int row, int d) { return plx_swz(row, d >> 3) + (d & 7); }

constexpr int kTileElems = kBlockN * kHeadDim;  // one K or V tile (kTileBytes / 2)
static_assert(kHeadDim % 64 == 0, "the head dim is whole 128-byte swizzle chunks");
static_assert(kBlockN <= 256, "a TMA box has at most 256 rows");
static_assert((kBlockN * 128) % 1024 == 0, "every chunk of a tile starts 1024-byte aligned");
static_assert(kTileBytes == kTileElems * 2, "the generator's tile bytes");
// The generator's cp.async split of a tile over the CTA (kRowsPerThread) is not used: TMA
// copies whole tiles.
static_assert(kRowsPerThread * kRowsPerPass >= kBlockN, "the generator's copy split covers a tile");

// ---- phase: load (the TMA ring) -------------------------------------------------------
// Tile t lives in stage t % kStages (K, then V) and completes phase t / kStages of full[t % kStages].
struct TmaRing {
  plx_e16* base;  // 1024-byte aligned
  plx_u64* full;  // [kStages], one arrival (the issuing thread) plus the tile's bytes
  __device__ __forceinline__ plx_e16* k(int t) const { return base + (t % kStages) * 2 * kTileElems; }
  __device__ __forceinline__ plx_e16* v(int t) const { return k(t) + kTileElems; }
  __device__ __forceinline__ plx_u64* bar(int t) const { return full + t % kStages; }
};

// One thread, before any copy: the barriers, and the fence that shows them to the async proxy.
__device__ __forceinline__ void init_ring(const TmaRing& ring) {
#pragma unroll
  for (int s = 0; s < kStages; ++s) plx_mbar_init(ring.full + s, 1);
  plx_mbar_init_fence();
}

// Where a CTA's tiles come from: the maps and the (kv head, sequence) coordinates; paged,
// the sequence's block-table row and key count as well.
struct KvTma {
  const PlxTensorMap* k;
  const PlxTensorMap* v;
  int kvh, b;
  const int* pages;
  int len;
};

// ---- paged K/V: a tile is kBoxes boxes per chunk, none crossing a page -----------------
constexpr bool kPagedKv = kPageSize > 0;
constexpr int kBoxes = kBlockN / kPageBox;
static_assert(kBlockN % kPageBox == 0 && kPageBox % 8 == 0 && kBoxes <= 32,
              "boxes of whole 8-row swizzle atoms tile a tile, one box per lane of warp 0");
static_assert(!kPagedKv || kPageSize % kPageBox == 0, "a box never crosses a page");

// Box `lane` of the tile starting at key k0: its page and slot. A box wholly past the
// sequence goes to page -1, which TMA fills with zeros (still counting its bytes).
struct PageBox {
  int page, slot;
};
__device__ __forceinline__ PageBox page_box(const KvTma& src, int k0) {
  const int lane = threadIdx.x & 31;
  const int key = k0 + lane * kPageBox;
  constexpr int kSpan = kPagedKv ? kPageSize : 1;
  return PageBox{lane < kBoxes && key < src.len ? src.pages[key / kSpan] : -1, key % kSpan};
}

// The elected thread copies tile t (keys k0..k0 + kBlockN): the stage's bytes are announced
// first, then 2 x kDChunks boxes. Zero-filled rows count towards the bytes as well.
__device__ __forceinline__ void issue_tile(const TmaRing& ring, const KvTma& src, int t, int k0) {
  plx_mbar_arrive_expect_tx(ring.bar(t), 2 * kTileBytes);
#pragma unroll
  for (int c = 0; c < kDChunks; ++c) {
    plx_tma_load_4d(ring.k(t) + c * kBlockN * 64, src.k, ring.bar(t), c * 64, src.kvh, k0, src.b);
    plx_tma_load_4d(ring.v(t) + c * kBlockN * 64, src.v, ring.bar(t), c * 64, src.kvh, k0, src.b);
  }
}

// Paged: lane 0 of warp 0 announces the stage's bytes, then lane u < kBoxes copies box u of
// every chunk of K and V. pb is the lane's box, looked up a tile ahead.
__device__ __forceinline__ void issue_paged_tile(const TmaRing& ring, const KvTma& src, int t, PageBox pb) {
  const int lane = threadIdx.x & 31;
  if (lane == 0) plx_mbar_arrive_expect_tx(ring.bar(t), 2 * kTileBytes);
  __syncwarp();  // the bytes are expected before any box lands
  if (lane < kBoxes) {
#pragma unroll
    for (int c = 0; c < kDChunks; ++c) {
      const int at = (c * kBlockN + lane * kPageBox) * 64;
      plx_tma_load_4d(ring.k(t) + at, src.k, ring.bar(t), c * 64, src.kvh, pb.slot, pb.page);
      plx_tma_load_4d(ring.v(t) + at, src.v, ring.bar(t), c * 64, src.kvh, pb.slot, pb.page);
    }
  }
}

// A warp's rows of a tile outside its keys [lead, valid) hold whatever the cache has there
// (stale or never written slots, possibly not finite; paged, the page's keys before a
// window's start) or TMA's zeros. The mask hides their scores, but 0 x NaN would still
// reach O (P V) and the Parallax centre (p1 s2): each warp clears its own such rows of K
// and V before reading them. Only a split's last tile (and, paged with a window, the first)
// has any; the fence orders the clearing before a later TMA refill of the stage.
__device__ __forceinline__ void clear_rows_outside(plx_e16* sk, plx_e16* sv, int key0, int lead, int valid) {
  const int lane = threadIdx.x & 31;
  for (int i = lane; i < kKeysPerWarp * kChunks; i += 32) {
    const int key = i / kChunks, c = i % kChunks;
    if (key >= lead && key < valid) continue;
    *reinterpret_cast<plx_u32x4*>(sk + plx_swz(key0 + key, c)) = plx_u32x4{0u, 0u, 0u, 0u};
    *reinterpret_cast<plx_u32x4*>(sv + plx_swz(key0 + key, c)) = plx_u32x4{0u, 0u, 0u, 0u};
  }
  plx_fence_proxy_async();
  __syncwarp();
}

// Streams the num_tiles tiles of keys from k_begin through the ring: kStages - 1 tiles ahead
// of the math. Thread 0 issues (paged: warp 0, each lane's page numbers loaded a tile before
// it issues them, so the block table's latency hides behind a tile's math); at the top of
// iteration t one CTA barrier shows every warp done with tile t - 1, whose stage then takes
// tile t + kStages - 1. started() runs once the first tiles are in flight; tile(t) once tile
// t has landed. Returns with the ring idle.
template <typename Started, typename Tile>
__device__ __forceinline__ void stream_kv_tma(const TmaRing& ring, const KvTma& src, int k_begin, int num_tiles,
                                              Started started, Tile tile) {
  const bool producer = kPagedKv ? threadIdx.x < 32 : threadIdx.x == 0;
  PageBox next{};
  if (producer) {
    if constexpr (kPagedKv) {
      PageBox first[kStages - 1];
#pragma unroll
      for (int t = 0; t < kStages - 1; ++t) first[t] = page_box(src, k_begin + t * kBlockN);  // loads fly together
#pragma unroll
      for (int t = 0; t < kStages - 1; ++t)
        if (t < num_tiles) issue_paged_tile(ring, src, t, first[t]);
      next = page_box(src, k_begin + (kStages - 1) * kBlockN);
    } else {
      for (int t = 0; t < kStages - 1 && t < num_tiles; ++t) issue_tile(ring, src, t, k_begin + t * kBlockN);
    }
  }
  started();
#pragma unroll 1
  for (int t = 0; t < num_tiles; ++t) {
    const int tn = t + kStages - 1;
    __syncthreads();
    if (producer && tn < num_tiles) {
      if constexpr (kPagedKv) {
        issue_paged_tile(ring, src, tn, next);
        next = page_box(src, k_begin + (tn + 1) * kBlockN);
      } else {
        issue_tile(ring, src, tn, k_begin + tn * kBlockN);
      }
    }
    plx_mbar_wait(ring.bar(t), (t / kStages) & 1);
    tile(t);
  }
  __syncthreads();
}
