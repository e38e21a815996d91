// Swizzled shared-memory tiles and the cp.async copy of one K and one V tile.
// Needs: prelude.cuh; kHeadDim, kChunks, kBlockN, kRowsPerPass, kRowsPerThread (generator);
// a KvSource (the family's: where key rows live in global memory).

// ---- phase: load --------------------------------------------------------------------
// Element offset of 16-byte chunk `chunk` of row `row` in a [rows][kHeadDim] tile. The chunk
// index is XORed with row%8 so the 8 row addresses of one ldmatrix hit 8 bank groups.
__device__ __forceinline__ int plx_swz(int row, int chunk) {
  return row * kHeadDim + ((chunk ^ (row & 7)) << 3);
}
__device__ __forceinline__ int plx_swz_elem(int row, int d) {
  return plx_swz(row, d >> 3) + (d & 7);
}

// One K and one V tile of kBlockN keys starting at key k0 into the ring stage. Keys at or
// past k_end are zero-filled. Each thread always copies the same 16-byte chunk column of
// rows tid/kChunks + j*kRowsPerPass, so a row's address (and, for paged KV, its page,
// fetched a tile ahead into `pages`) is computed once per row.
__device__ __forceinline__ void load_kv_tile(plx_e16* sk, plx_e16* sv, const KvSource& src,
                                             const KvSource::Pages& pages, int k0, int k_end) {
  const int chunk = threadIdx.x % kChunks;
#pragma unroll
  for (int j = 0; j < kRowsPerThread; ++j) {
    const int row = threadIdx.x / kChunks + j * kRowsPerPass;
    if (kRowsPerPass * kRowsPerThread > kBlockN && row >= kBlockN) break;
    const int key = k0 + row;
    const bool valid = key < k_end;
    const plx_e16* gk;
    const plx_e16* gv;
    src.rows(pages, j, valid ? key : k_end - 1, gk, gv);
    plx_cp_async16(sk + plx_swz(row, chunk), gk + chunk * 8, valid);
    plx_cp_async16(sv + plx_swz(row, chunk), gv + chunk * 8, valid);
  }
}
