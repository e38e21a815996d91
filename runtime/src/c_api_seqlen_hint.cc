// plx_decode_args.max_seqlen_k: the live length a decode plan follows instead of the cache's
// capacity. Safe whatever its value within the capacity: the kernels take each sequence's
// length from cache_seqlens (the seqlen parameter only when there are none) and split every
// sequence's own keys, so the hint moves the plan (bucket, split count, workspace) and never
// which keys are read.
#include "c_api_internal.h"

namespace parallax::capi {

absl::StatusOr<DecodeCall> TranslateDecodeCall(const plx_decode_args& a) {
  absl::StatusOr<DecodeCall> c = TranslateDecodeArgs(a);
  if (!c.ok() || a.max_seqlen_k == -1) return c;
  // TranslateDecodeArgs plans for the capacity: max_pages x page_size paged, Lmax contiguous.
  const bool paged = c->params.block_table != nullptr;
  const int capacity = c->params.seqlen;
  const char* what = paged ? "the block table's capacity" : "the cache's length";
  const char* from = paged ? " (max_pages x page_size)" : " (k.shape[1])";
  if (a.max_seqlen_k < 0)
    return Invalid("max_seqlen_k=", a.max_seqlen_k, ": must be -1 (plan for ", what, ") or 0..", capacity,
                   " (the longest cache_seqlens)");
  if (a.max_seqlen_k > capacity)
    return Invalid("max_seqlen_k=", a.max_seqlen_k, ": exceeds ", what, " ", capacity, from);
  // Without lengths the kernel reads seqlen keys of every sequence: a hint would drop keys.
  if (c->params.seqlens == nullptr && a.max_seqlen_k != capacity)
    return Invalid("max_seqlen_k=", a.max_seqlen_k, ": without cache_seqlens every sequence has the cache's ",
                   capacity, " keys (k.shape[1]); pass cache_seqlens for shorter live lengths, or -1");
  c->params.seqlen = a.max_seqlen_k;
  return c;
}

}  // namespace parallax::capi
