// Paged KV for decode: the sequence's block-table row and the page/slot strides.
// Needs: kv_paged.cuh (common: KvSource), kernel_abi (PlxDecodeParams).

__device__ __forceinline__ KvSource make_kv_source(const PlxDecodeParams& p, int b, int kvh) {
  KvSource s;
  s.k = static_cast<const plx_e16*>(p.k) + kvh * p.k_stride_h;
  s.v = static_cast<const plx_e16*>(p.v) + kvh * p.v_stride_h;
  s.pages = p.block_table + (long long)b * p.block_table_stride;
  s.k_page = p.k_stride_0; s.k_slot = p.k_stride_1;
  s.v_page = p.v_stride_0; s.v_slot = p.v_stride_1;
  return s;
}
