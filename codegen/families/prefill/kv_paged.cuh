// Prefill (extend) over a paged cache: keys of sequence b in the pages its block-table row
// names, seqused_k[b] of them; the queries are the last of those keys (the causal mask is
// aligned to the end, as for any prefill).
// Needs: kv_paged.cuh (common: KvSource), kernel_abi (PlxPrefillParams).

struct SequenceKv {
  KvSource kv;
  int lk;
};
__device__ __forceinline__ SequenceKv sequence_kv(const PlxPrefillParams& p, int b, int kvh) {
  SequenceKv s;
  s.lk = p.seqused_k[b];
  s.kv.k = static_cast<const plx_e16*>(p.k) + kvh * p.k_stride_h;
  s.kv.v = static_cast<const plx_e16*>(p.v) + kvh * p.v_stride_h;
  s.kv.pages = p.block_table + (long long)b * p.block_table_stride;
  s.kv.k_page = p.k_stride_b; s.kv.k_slot = p.k_stride_l;
  s.kv.v_page = p.v_stride_b; s.kv.v_slot = p.v_stride_l;
  return s;
}
