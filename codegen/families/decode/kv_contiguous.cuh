// Contiguous KV for decode: [B, Lmax, Hkv, D] with explicit strides.
// Needs: kernel_abi (PlxDecodeParams), kv_contiguous.cuh (common: KvSource).

__device__ __forceinline__ KvSource make_kv_source(const PlxDecodeParams& p, int b, int kvh) {
  KvSource s;
  s.k = static_cast<const plx_e16*>(p.k) + b * p.k_stride_0 + kvh * p.k_stride_h;
  s.v = static_cast<const plx_e16*>(p.v) + b * p.v_stride_0 + kvh * p.v_stride_h;
  s.k_tok = p.k_stride_1;
  s.v_tok = p.v_stride_1;
  return s;
}
