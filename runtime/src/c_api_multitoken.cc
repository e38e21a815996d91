// Multi-token decode (speculative verification: q [B, Tq, Hq, D], Tq > 1) as extend over the
// same cache. Query t of sequence b sees keys j <= cache_seqlens[b] - Tq + t: the cache holds
// the Tq new tokens, and they are causal among themselves, which is exactly the prefill
// kernels' mask aligned to the end of the keys. One kernel for any Tq, no split-KV.
#include <cstring>
#include <optional>

#include "c_api_internal.h"

namespace parallax::capi {

absl::StatusOr<std::optional<plx_prefill_args>> DecodeAsExtend(const plx_decode_args& a) {
  if (a.q.ndim != 4 || a.q.shape[1] <= 1) return std::nullopt;  // one token per sequence: decode
  const int64_t tq = a.q.shape[1];
  if (a.num_splits != 0)
    return Invalid("num_splits=", a.num_splits, ": multi-token decode (q.shape[1]=", tq,
                   ") runs as extend, which has no split-KV; leave it 0");
  if (a.variant != nullptr && std::strncmp(a.variant, "decode-", 7) == 0)
    return Invalid("variant: '", a.variant, "' is a decode kernel; multi-token decode (q.shape[1]=", tq,
                   ") runs a prefill (extend) kernel: name a prefill key or none");
  if (a.block_table.data == nullptr && a.cache_seqlens.data != nullptr)
    return Unsupported("cache_seqlens: multi-token decode (q.shape[1]=", tq, ") over a contiguous cache needs "
                       "sequences that fill it (no cache_seqlens) or a paged cache (block_table)");
  plx_prefill_args p;
  std::memset(&p, 0, sizeof(p));  // every tensor absent (lse, tbar, cu_seqlens)
  p.q = a.q; p.r = a.r; p.k = a.k; p.v = a.v; p.out = a.out;
  p.max_seqlen_q = -1;
  p.max_seqlen_k = a.max_seqlen_k;  // the live-length hint, checked against the paged capacity
  p.qk_scale = a.qk_scale;
  p.window = a.window;
  p.window_left = a.window_left;
  p.window_right = a.window_right;
  p.affine = a.affine;
  p.eps = a.eps;
  p.variant = a.variant;
  p.block_table = a.block_table;
  p.seqused_k = a.cache_seqlens;
  return p;
}

}  // namespace parallax::capi
