// The backward's view of one sequence: its lengths, where its rows start, and which keys a
// query row sees (the forward's rule: causal aligned to the end of the keys, or none).
// Needs: kernel_abi (PlxPrefillBwdParams, PlxBwdRows), prelude.cuh, element16.cuh;
// kNumQHeads, kWindow (generator).

struct BwdSequence {
  int lq, lk;
  int diag;          // causal: lk - lq, the last key query row 0 sees; non-causal: lk (every key)
  long long q0, k0;  // token of query row 0 and of key 0 (packed: cu_seqlens; padded: b * seqlen)
};
__device__ __forceinline__ BwdSequence bwd_sequence(const PlxPrefillBwdParams& p, int b) {
  BwdSequence s;
  if (p.cu_seqlens_q) {
    s.q0 = p.cu_seqlens_q[b];
    s.lq = p.cu_seqlens_q[b + 1] - p.cu_seqlens_q[b];
  } else {
    s.q0 = (long long)b * p.seqlen_q;
    s.lq = p.seqlen_q;
  }
  if (p.cu_seqlens_k) {
    s.k0 = p.cu_seqlens_k[b];
    s.lk = p.cu_seqlens_k[b + 1] - p.cu_seqlens_k[b];
  } else {
    s.k0 = (long long)b * p.seqlen_k;
    s.lk = p.seqlen_k;
  }
  s.diag = p.causal ? s.lk - s.lq : s.lk;
  return s;
}

// Element offset of row i (head h) of sequence b, whose row 0 is token tok0, in t.
__device__ __forceinline__ long long seq_row(const PlxBwdRows& t, bool packed, int b, long long tok0, int i, int h) {
  return (packed ? tok0 * t.stride_l : b * t.stride_b) + (long long)i * t.stride_l + (long long)h * t.stride_h;
}
// The same for a query token counted over the whole batch (padded: b * seqlen_q + i).
__device__ __forceinline__ long long token_row(const PlxBwdRows& t, const PlxPrefillBwdParams& p, long long tok, int h) {
  if (p.cu_seqlens_q) return tok * t.stride_l + (long long)h * t.stride_h;
  const long long b = tok / p.seqlen_q;
  return b * t.stride_b + (tok - b * p.seqlen_q) * t.stride_l + (long long)h * t.stride_h;
}
// The element of token tok, head h in lse / tbar (PlxPrefillParams's layout).
__device__ __forceinline__ long long token_stat(const PlxPrefillBwdParams& p, long long tok, int h) {
  if (p.cu_seqlens_q) return h * p.stats_stride_h + tok;
  const long long b = tok / p.seqlen_q;
  return b * p.stats_stride_b + h * p.stats_stride_h + (tok - b * p.seqlen_q);
}

// Query row i sees key j iff both exist, j <= diag + i and (window) j > diag + i - W.
__device__ __forceinline__ bool bwd_visible(const PlxPrefillBwdParams& p, const BwdSequence& s, int i, int j) {
  const int last = s.diag + i;
  return i < s.lq && j < s.lk && j <= last && (!kWindow || p.window <= 0 || j > last - p.window);
}

// Two adjacent 16-bit elements at element offset off of base, as floats.
__device__ __forceinline__ void load_pair(const void* base, long long off, float& x0, float& x1) {
  const plx_u32 x = *reinterpret_cast<const plx_u32*>(static_cast<const plx_e16*>(base) + off);
  x0 = plx_to_float((plx_e16)(x & 0xffffu));
  x1 = plx_to_float((plx_e16)(x >> 16));
}
__device__ __forceinline__ void store_pair(void* base, long long off, float x0, float x1) {
  *reinterpret_cast<plx_u32*>(static_cast<plx_e16*>(base) + off) = plx_pack2(x0, x1);
}
