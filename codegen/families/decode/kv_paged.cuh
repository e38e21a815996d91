// Paged KV for decode: K/V rows live in pages named by the sequence's block-table row.
// Needs: prelude.cuh, kernel_abi (PlxDecodeParams); kPageSize, kRowsPerThread, kChunks,
// kRowsPerPass (generator).

// Paged KV: key -> (block_table[b][key / kPageSize], key % kPageSize). The page of each
// row a thread copies is fetched one tile ahead (fetch), so the block-table load latency
// hides behind the current tile's math instead of stalling the copy issue.
struct KvSource {
  const plx_e16* k;  // already offset to this kv head
  const plx_e16* v;
  const int* pages;  // this sequence's block-table row
  long long k_page, k_slot, v_page, v_slot;
  struct Pages {
    int page[kRowsPerThread];
  };
  __device__ __forceinline__ void fetch(Pages& pg, int k0, int k_end) const {
#pragma unroll
    for (int j = 0; j < kRowsPerThread; ++j) {
      const int key = min(k0 + (int)threadIdx.x / kChunks + j * kRowsPerPass, k_end - 1);
      pg.page[j] = pages[key / kPageSize];
    }
  }
  __device__ __forceinline__ void rows(const Pages& pg, int j, int key, const plx_e16*& kr,
                                       const plx_e16*& vr) const {
    const int slot = key % kPageSize;
    kr = k + (long long)pg.page[j] * k_page + slot * k_slot;
    vr = v + (long long)pg.page[j] * v_page + slot * v_slot;
  }
};
__device__ __forceinline__ KvSource make_kv_source(const PlxDecodeParams& p, int b, int kvh) {
  KvSource s;
  s.k = static_cast<const plx_e16*>(p.k) + kvh * p.k_stride_h;
  s.v = static_cast<const plx_e16*>(p.v) + kvh * p.v_stride_h;
  s.pages = p.block_table + (long long)b * p.block_table_stride;
  s.k_page = p.k_stride_0; s.k_slot = p.k_stride_1;
  s.v_page = p.v_stride_0; s.v_slot = p.v_stride_1;
  return s;
}
