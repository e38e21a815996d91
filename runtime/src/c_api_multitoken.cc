// Decode arguments the decode kernels do not serve, as the equivalent extend over the same
// cache (prefill kernels, seqused_k = cache_seqlens):
//  - multi-token decode (speculative verification: q [B, Tq, Hq, D], Tq > 1) where no decode
//    family serves it: on sm_90 decode_sm90 takes Tq <= 16 over contiguous caches and pages
//    of >= 8 keys (split-KV, K/V read once for every token); elsewhere, and for more tokens,
//    statistics or a prefill key, it runs as extend. Query t of sequence b sees keys
//    j <= cache_seqlens[b] - Tq + t: the cache holds the Tq new tokens, and they are causal
//    among themselves, which is exactly the prefill kernels' mask aligned to the end of the
//    keys. One kernel for any Tq, no split-KV.
//  - decode with statistics (lse, tbar, vbar), which only the prefill kernels write: one
//    token runs as an extend of Tq = 1 (q [B, Hq, D] viewed as [B, 1, Hq, D], its [B, Hq]
//    statistics as [B, Hq, 1]).
#include <cstring>
#include <optional>

#include "c_api_internal.h"
#include "parallax/codegen/kernel_family.h"

namespace parallax::capi {
namespace {

// A [B, Hq, D] (or [B, Hq]) descriptor as [B, 1, Hq, D] (or [B, Hq, 1]): the same memory.
plx_tensor InsertUnitDim(const plx_tensor& t, int at) {
  plx_tensor u = t;
  if (t.ndim < 1 || t.ndim >= PLX_MAX_DIMS) return u;  // malformed: the translation names it
  bool all_zero = true;
  for (int i = 0; i < t.ndim; ++i) all_zero = all_zero && t.strides[i] == 0;
  u.ndim = t.ndim + 1;
  for (int i = 0, j = 0; i < u.ndim; ++i) {
    if (i == at) {
      u.shape[i] = 1;
      // Any stride addresses a dimension of size 1 the same; all zero stays "contiguous".
      u.strides[i] = all_zero ? 0 : (at < t.ndim ? t.strides[at] : 1);
      continue;
    }
    u.shape[i] = t.shape[j];
    u.strides[i] = t.strides[j];
    ++j;
  }
  return u;
}

// One token's lse / tbar: [B, Hq] for q [B, Hq, D] (checked here, with decode's words).
absl::Status CheckOneTokenStats(const plx_tensor& s, const char* name, const plx_tensor& q) {
  if (s.data == nullptr || q.ndim != 3) return absl::OkStatus();
  if (s.ndim != 2 || s.shape[0] != q.shape[0] || s.shape[1] != q.shape[1]) {
    const int n = s.ndim < 0 || s.ndim > PLX_MAX_DIMS ? 0 : s.ndim;
    return Invalid(name, ": shape ", ShapeString(s.shape, n), " does not match decode's [B, Hq] = [", q.shape[0],
                   ", ", q.shape[1], "] for q [B, Hq, D] ([B, Hq, Tq] goes with q [B, Tq, Hq, D])");
  }
  return absl::OkStatus();
}

// lse, tbar or vbar asked for: only the prefill kernels write them.
bool WantsStats(const plx_decode_args& a) {
  return a.lse.data != nullptr || a.tbar.data != nullptr || a.vbar.data != nullptr;
}

}  // namespace

bool DecodeBeatsExtend(int64_t batch, int64_t tq, int64_t hq, int64_t hkv) {
  if (hkv < 1 || hq % hkv != 0) return false;  // translation names the heads
  const int64_t group = hq / hkv;
  // Rows of q per kv head: beyond 32 the decode's mma.sync core is compute-bound, and at
  // B >= 8 extend is as fast or faster (GQA 32/8 Tq 16: decode at 0.81-1.13x extend's speed,
  // behind on pages); at B = 1 extend has too few CTAs (decode 1.7x and more).
  if (tq * group > 32) return batch == 1;
  // MHA at B x Hkv >= 256 streams at the bandwidth limit either way (B=32 L=4k: decode at
  // 0.90-1.05x extend's speed).
  return group > 1 || batch * hkv < 256;
}

bool MultiTokenRunsAsDecode(const plx_decode_args& a, int sm) {
  if (a.q.ndim != 4 || a.q.shape[1] < 2 || a.q.shape[1] > kMaxDecodeQueries) return false;
  if (WantsStats(a)) return false;
  const bool named = a.variant != nullptr && a.variant[0] != '\0';
  if (named && std::strncmp(a.variant, "decode-", 7) != 0) return false;
  if (!named && a.k.ndim == 4 &&
      !DecodeBeatsExtend(a.q.shape[0], a.q.shape[1], a.q.shape[2], a.k.shape[2]))
    return false;
  Problem p;
  p.mode = Mode::kDecode;
  p.queries = static_cast<int>(a.q.shape[1]);
  p.head_dim = a.q.shape[3] <= 1024 ? static_cast<int>(a.q.shape[3]) : 0;
  if (a.block_table.data != nullptr) {  // the page size is k.shape[1]; translation checks the rest
    p.kv_layout = KvLayout::kPaged;
    p.page_size = a.k.ndim == 4 && a.k.shape[1] <= (1 << 20) ? static_cast<int>(a.k.shape[1]) : 0;
  }
  return ServingFamily(p, sm) != nullptr;
}

absl::StatusOr<std::optional<plx_prefill_args>> DecodeAsExtend(const plx_decode_args& a, int sm) {
  const bool multi = a.q.ndim == 4 && a.q.shape[1] > 1 && !MultiTokenRunsAsDecode(a, sm);
  const bool stats = WantsStats(a);
  if (!multi && !stats) return std::nullopt;  // decode runs it
  const std::string why = multi ? absl::StrCat("multi-token decode (q.shape[1]=", a.q.shape[1], ")")
                                : std::string("decode with lse/tbar/vbar");
  if (a.num_splits != 0)
    return Invalid("num_splits=", a.num_splits, ": ", why, " runs as extend, which has no split-KV; leave it 0");
  if (a.variant != nullptr && std::strncmp(a.variant, "decode-", 7) == 0)
    return Invalid("variant: '", a.variant, "' is a decode kernel; ", why,
                   " runs a prefill (extend) kernel: name a prefill key or none");
  if (a.block_table.data == nullptr && a.cache_seqlens.data != nullptr)
    return Unsupported("cache_seqlens: ", why, " runs as extend, which over a contiguous cache needs "
                       "sequences that fill it (no cache_seqlens) or a paged cache (block_table)");
  for (const auto& [t, name] : {std::pair<const plx_tensor*, const char*>{&a.lse, "lse"}, {&a.tbar, "tbar"}})
    if (absl::Status s = CheckOneTokenStats(*t, name, a.q); !s.ok()) return s;
  plx_prefill_args p;
  std::memset(&p, 0, sizeof(p));  // every tensor absent (cu_seqlens among them)
  p.struct_size = sizeof(p);
  p.q = a.q; p.r = a.r; p.k = a.k; p.v = a.v; p.out = a.out;
  p.lse = a.lse; p.tbar = a.tbar; p.vbar = a.vbar;
  if (a.q.ndim == 3) {  // one token: [B, Hq, D] as [B, 1, Hq, D], [B, Hq] as [B, Hq, 1]
    for (plx_tensor* t : {&p.q, &p.r, &p.out, &p.vbar})
      if (t->data != nullptr) *t = InsertUnitDim(*t, 1);
    for (plx_tensor* t : {&p.lse, &p.tbar})
      if (t->data != nullptr) *t = InsertUnitDim(*t, 2);
  }
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
  p.causal = 1;
  return p;
}

}  // namespace parallax::capi
