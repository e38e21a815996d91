// Prefill's view of one (sequence, head): packed (cu_seqlens) or padded batches and the
// causal mask aligned to the end of the keys.
// Needs: kernel_abi (PlxPrefillParams), kv_contiguous.cuh (common: KvSource); kGroup,
// kWindow (generator).

// One sequence of the batch: its lengths and base pointers (packed when cu_seqlens given).
struct Sequence {
  int lq, lk;
  const plx_e16* q;
  const plx_e16* r;
  plx_e16* out;
  KvSource kv;
};
__device__ __forceinline__ Sequence make_sequence(const PlxPrefillParams& p, int b, int h) {
  const int kvh = h / kGroup;
  long long qoff, koff, ooff;
  Sequence s;
  if (p.cu_seqlens_q) {
    const int q0 = p.cu_seqlens_q[b];
    s.lq = p.cu_seqlens_q[b + 1] - q0;
    qoff = (long long)q0 * p.q_stride_l;
    ooff = (long long)q0 * p.o_stride_l;
    s.r = static_cast<const plx_e16*>(p.r) + (long long)q0 * p.r_stride_l + h * p.r_stride_h;
  } else {
    s.lq = p.seqlen_q;
    qoff = b * p.q_stride_b;
    ooff = b * p.o_stride_b;
    s.r = static_cast<const plx_e16*>(p.r) + b * p.r_stride_b + h * p.r_stride_h;
  }
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
  s.q = static_cast<const plx_e16*>(p.q) + qoff + h * p.q_stride_h;
  s.out = static_cast<plx_e16*>(p.out) + ooff + h * p.o_stride_h;
  s.kv.k = static_cast<const plx_e16*>(p.k) + koff + kvh * p.k_stride_h;
  s.kv.k_tok = p.k_stride_l;
  s.kv.v_tok = p.v_stride_l;
  return s;
}

// Key j is visible to query row i iff j < Lk, j <= Lk - Lq + i and (window) j > Lk - Lq + i - W.
__device__ __forceinline__ bool visible_key(const PlxPrefillParams& p, const Sequence& s, int i, int j) {
  const int last = s.lk - s.lq + i;
  return j < s.lk && j <= last && (!kWindow || p.window <= 0 || j > last - p.window);
}
