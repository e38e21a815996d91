// Prefill's keys in contiguous tensors: padded [B, Lk, Hkv, D] or packed by cu_seqlens_k.
// Needs: kv_contiguous.cuh (common: KvSource), kernel_abi (PlxPrefillParams).

// Sequence b's K/V rows of kv head kvh, and its key count.
struct SequenceKv {
  KvSource kv;
  int lk;
};
__device__ __forceinline__ SequenceKv sequence_kv(const PlxPrefillParams& p, int b, int kvh) {
  SequenceKv s;
  long long koff;  // (v's pointer set in the branch: ptxas allocates the fma kernel 10 registers better)
  if (p.cu_seqlens_k) {
    const int k0 = p.cu_seqlens_k[b];
    s.lk = p.cu_seqlens_k[b + 1] - k0;
    koff = (long long)k0 * p.k_stride_l;
    s.kv.v = static_cast<const plx_e16*>(p.v) + (long long)k0 * p.v_stride_l + kvh * p.v_stride_h;
  } else {
    s.lk = p.seqlen_k;
    koff = b * p.k_stride_b;
    s.kv.v = static_cast<const plx_e16*>(p.v) + b * p.v_stride_b + kvh * p.v_stride_h;
  }
  s.kv.k = static_cast<const plx_e16*>(p.k) + koff + kvh * p.k_stride_h;
  s.kv.k_tok = p.k_stride_l;
  s.kv.v_tok = p.v_stride_l;
  return s;
}
