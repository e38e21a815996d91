// Where key rows live when K/V are paged: pages [num_pages, page_size, Hkv, D] named by the
// sequence's block-table row. The family sets the fields (its make_kv_source / sequence).
// Needs: prelude.cuh; kPageSize, kRowsPerThread, kChunks, kRowsPerPass (generator).

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
