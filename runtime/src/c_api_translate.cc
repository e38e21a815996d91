// Host-only validation of the C API's arguments, building the runtime's DecodeCall /
// PrefillCall (kernel parameters included) straight from the tensor descriptors. Every
// message starts with the argument it is about.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "c_api_internal.h"
#include "parallax/codegen/variant.h"

namespace parallax::capi {
namespace {

constexpr int64_t kIntMax = std::numeric_limits<int32_t>::max();
// Largest element offset a tensor may address (sum over dims of (shape-1) * stride). Far above
// any real allocation, and low enough that the kernels' 64-bit index arithmetic (offsets
// times 2-byte elements, plus a base pointer) cannot overflow.
constexpr int64_t kMaxElementOffset = int64_t{1} << 48;

#define PLX_RETURN_IF_ERROR(expr)                   \
  do {                                              \
    if (absl::Status plx_s_ = (expr); !plx_s_.ok()) \
      return plx_s_;                                \
  } while (0)

}  // namespace

const char* DTypeName(plx_dtype d) {
  switch (d) {
    case PLX_BF16: return "bf16";
    case PLX_FP16: return "fp16";
    case PLX_INT32: return "int32";
    case PLX_FLOAT32: return "float32";
    case PLX_DTYPE_UNSET: return "unset";
  }
  return "unknown";
}

std::string ShapeString(const int64_t* s, int n) {
  std::string out = "[";
  for (int i = 0; i < n; ++i) absl::StrAppend(&out, i ? ", " : "", s[i]);
  return out + "]";
}

namespace {

bool IsPow2(int64_t x) { return x > 0 && (x & (x - 1)) == 0; }

}  // namespace

// The generic tensor checks (c_api_internal.h), shared with the merge's translation.

// The largest element offset must stay below kMaxElementOffset, computed without overflow.
// The message names the dimension spanning the most (the one to fix).
absl::Status CheckOffsets(const Tensor& t) {
  for (int i = 0; i < t.ndim; ++i)
    if (t.shape[i] == 0) return absl::OkStatus();  // empty: nothing is addressed
  auto too_far = [&](int i) {
    return Invalid(t.name, ": strides[", i, "]=", t.strides[i], " with shape[", i, "]=", t.shape[i],
                   ": the tensor would address element offsets beyond 2^48 (sum over dimensions of "
                   "(shape-1) x stride)");
  };
  int64_t max_offset = 0, widest_span = -1;
  int widest = 0;
  bool overflow = false;
  for (int i = 0; i < t.ndim; ++i) {
    int64_t span = 0;
    if (__builtin_mul_overflow(t.shape[i] - 1, t.strides[i], &span)) return too_far(i);
    if (span > widest_span) {
      widest_span = span;
      widest = i;
    }
    overflow = overflow || __builtin_add_overflow(max_offset, span, &max_offset);
  }
  if (overflow || max_offset > kMaxElementOffset) return too_far(widest);
  return absl::OkStatus();
}

absl::StatusOr<Tensor> Describe(const plx_tensor& t, const char* name) {
  if (t.data == nullptr) return Invalid(name, ": data is NULL (a device pointer is required)");
  if (t.ndim < 1 || t.ndim > PLX_MAX_DIMS)
    return Invalid(name, ": ndim=", t.ndim, ": must be in 1..", PLX_MAX_DIMS);
  switch (t.dtype) {
    case PLX_BF16:
    case PLX_FP16:
    case PLX_INT32:
    case PLX_FLOAT32: break;
    case PLX_DTYPE_UNSET: return Invalid(name, ": dtype is unset (PLX_DTYPE_UNSET)");
    default: return Invalid(name, ": dtype=", static_cast<int>(t.dtype), ": not a plx_dtype value");
  }
  Tensor out;
  out.name = name;
  out.data = t.data;
  out.dtype = t.dtype;
  out.ndim = t.ndim;
  bool all_zero = true;
  for (int i = 0; i < t.ndim; ++i) {
    if (t.shape[i] < 0) return Invalid(name, ": shape[", i, "]=", t.shape[i], ": must be >= 0");
    if (t.shape[i] > kIntMax)
      return Unsupported(name, ": shape[", i, "]=", t.shape[i], ": sizes above 2^31-1 are not supported");
    out.shape[i] = t.shape[i];
    all_zero = all_zero && t.strides[i] == 0;
  }
  if (all_zero) {  // contiguous row-major
    int64_t s = 1;
    for (int i = t.ndim - 1; i >= 0; --i) {
      out.strides[i] = s;
      // Saturates instead of overflowing; the offset check below then names the dimension.
      if (__builtin_mul_overflow(s, std::max<int64_t>(t.shape[i], 1), &s)) s = kMaxElementOffset + 1;
    }
  } else {
    for (int i = 0; i < t.ndim; ++i) {
      if (t.strides[i] < 0)
        return Invalid(name, ": strides[", i, "]=", t.strides[i], ": negative strides are not supported");
      out.strides[i] = t.strides[i];
    }
  }
  PLX_RETURN_IF_ERROR(CheckOffsets(out));
  return out;
}

// Writes through two different indices must never land on one element: an output whose
// dimensions overlap (a zero stride, or a stride inside another dimension's span) would have
// CTAs of different batches or heads race on the same memory. Sufficient test: with the
// dimensions of size > 1 sorted by stride, each stride must clear the span of the previous.
absl::Status CheckNoAliasing(const Tensor& t) {
  int dims[PLX_MAX_DIMS];
  int n = 0;
  for (int i = 0; i < t.ndim; ++i) {
    if (t.shape[i] == 0) return absl::OkStatus();  // empty: nothing is written
    if (t.shape[i] > 1) dims[n++] = i;
  }
  // By stride; an insertion sort, as std::sort on 4 ints trips GCC 12's -Warray-bounds.
  for (int k = 1; k < n; ++k)
    for (int m = k; m > 0 && t.strides[dims[m]] < t.strides[dims[m - 1]]; --m) std::swap(dims[m], dims[m - 1]);
  for (int k = 0; k < n; ++k) {
    const int i = dims[k];
    if (t.strides[i] == 0)
      return Invalid(t.name, ": strides[", i, "]=0 with shape[", i, "]=", t.shape[i],
                     ": an output cannot be broadcast (its elements would alias)");
    if (k == 0) continue;
    const int j = dims[k - 1];  // offsets are bounded by CheckOffsets, so this cannot overflow
    if (t.strides[i] < t.strides[j] * t.shape[j])
      return Invalid(t.name, ": strides[", i, "]=", t.strides[i], " overlaps dimension ", j, " (shape[", j,
                     "]=", t.shape[j], " x strides[", j, "]=", t.strides[j],
                     "): output elements would alias");
  }
  return absl::OkStatus();
}

// q, r, k, v, out: 16-bit, contiguous last dimension, 16-byte aligned rows (cp.async).
absl::Status CheckVectorLayout(const Tensor& t) {
  const int last = t.ndim - 1;
  if (t.strides[last] != 1)
    return Invalid(t.name, ": strides[", last, "]=", t.strides[last],
                   ": the last (head_dim) dimension must be contiguous (stride 1)");
  if (reinterpret_cast<uintptr_t>(t.data) % 16 != 0)
    return Invalid(t.name, ": data=", absl::StrFormat("%p", t.data),
                   ": must be 16-byte aligned (kernels use 16-byte vector loads)");
  for (int i = 0; i < last; ++i)
    if (t.shape[i] > 1 && t.strides[i] % 8 != 0)
      return Invalid(t.name, ": strides[", i, "]=", t.strides[i],
                     ": must be a multiple of 8 elements (16-byte aligned rows)");
  return absl::OkStatus();
}

absl::Status CheckSameDType(const Tensor& t, const Tensor& ref) {
  if (t.dtype != ref.dtype)
    return Invalid(t.name, ": dtype=", DTypeName(t.dtype), " does not match ", ref.name, "'s ",
                   DTypeName(ref.dtype));
  return absl::OkStatus();
}

namespace {

absl::Status CheckHeadDim(const Tensor& q) {
  const int64_t d = q.shape[q.ndim - 1];
  if (d != 64 && d != 128 && d != 256)
    return Unsupported(q.name, ": head_dim=", d, " (last dimension): must be 64, 128 or 256");
  return absl::OkStatus();
}

// k's heads against q's: Hkv >= 1, Hq a multiple of Hkv, sizes the kernels support.
absl::Status CheckHeads(const Tensor& q, int64_t hq, const Tensor& k, int64_t hkv, int hkv_dim) {
  if (hq < 1) return Invalid(q.name, ": num_q_heads=", hq, ": must be >= 1");
  if (hkv < 1) return Invalid(k.name, ": num_kv_heads=", hkv, " (shape[", hkv_dim, "]): must be >= 1");
  if (hq % hkv != 0)
    return Invalid(k.name, ": num_kv_heads=", hkv, " (shape[", hkv_dim, "]) does not divide ", q.name,
                   "'s num_q_heads=", hq, " (GQA needs Hq to be a multiple of Hkv)");
  if (hq > 1024) return Unsupported(q.name, ": num_q_heads=", hq, ": at most 1024 are supported");
  if (hkv > 256) return Unsupported(k.name, ": num_kv_heads=", hkv, ": at most 256 are supported");
  if (hq / hkv > 64)
    return Unsupported(k.name, ": GQA group size ", hq / hkv, " (num_q_heads/num_kv_heads): at most 64 is supported");
  return absl::OkStatus();
}

// block_table, cache_seqlens, cu_seqlens: int32 with a contiguous last dimension.
absl::Status CheckIndexTensor(const Tensor& t, int ndim, const char* layout) {
  if (t.dtype != PLX_INT32) return Invalid(t.name, ": dtype=", DTypeName(t.dtype), ": must be int32");
  if (t.ndim != ndim) return Invalid(t.name, ": ndim=", t.ndim, ": must be ", ndim, " (", layout, ")");
  if (reinterpret_cast<uintptr_t>(t.data) % 4 != 0)
    return Invalid(t.name, ": data=", absl::StrFormat("%p", t.data), ": must be 4-byte aligned");
  if (t.shape[ndim - 1] > 1 && t.strides[ndim - 1] != 1)
    return Invalid(t.name, ": strides[", ndim - 1, "]=", t.strides[ndim - 1],
                   ": the last dimension must be contiguous (stride 1)");
  return absl::OkStatus();
}

absl::Status CheckOptions(float qk_scale, plx_affine affine, float eps, Affine* out) {
  if (!std::isfinite(qk_scale))
    return Invalid("qk_scale=", qk_scale, ": must be finite (negative selects 1/sqrt(head_dim))");
  switch (affine) {
    case PLX_AFFINE_PLAIN: *out = Affine::kPlain; break;
    case PLX_AFFINE_AMPLIFIED: *out = Affine::kAmplified; break;
    default:
      return Invalid("affine=", static_cast<int>(affine), ": must be PLX_AFFINE_PLAIN or PLX_AFFINE_AMPLIFIED");
  }
  if (*out == Affine::kAmplified && !(std::isfinite(eps) && eps > 0.f))
    return Invalid("eps=", eps, ": must be a positive finite number with amplified affine");
  return absl::OkStatus();
}

// An explicit key must parse and describe exactly the call's problem and algorithm. Plain
// parsing on purpose: a client can never name a test-only (faulting, hanging) variant.
absl::Status CheckVariant(const char* key, const Problem& p, const Algorithm& alg) {
  absl::StatusOr<Variant> v = Variant::Parse(key);
  if (!v.ok()) return Invalid("variant: ", v.status().message());
  if (v->problem().mode != p.mode)
    return Invalid("variant: '", key, "' is a ", ToString(v->problem().mode), " kernel; this call needs a ",
                   ToString(p.mode), " key");
  if (!(v->problem() == p) || !(v->algorithm() == alg))
    return Invalid("variant: '", key, "' is for ", ProblemKey(v->problem(), v->algorithm()),
                   " but this call is ", ProblemKey(p, alg));
  return absl::OkStatus();
}

// A q-like decode tensor: [B, H, D], or [B, Tq, H, D] (Tq query tokens per sequence).
struct Rows {
  int64_t b = 0, t = 1, h = 0, d = 0, stride_b = 0, stride_t = 0, stride_h = 0;
};
absl::StatusOr<Rows> DecodeRows(const Tensor& t) {
  if (t.ndim != 3 && t.ndim != 4)
    return Invalid(t.name, ": ndim=", t.ndim, ": must be 3 ([B, Hq, D]) or 4 ([B, Tq, Hq, D])");
  if (t.ndim == 4 && t.shape[1] < 1)
    return Invalid(t.name, ": shape[1]=", t.shape[1], ": must be >= 1 (query tokens per sequence)");
  Rows r;
  r.b = t.shape[0];
  r.t = t.ndim == 4 ? t.shape[1] : 1;
  r.h = t.shape[t.ndim - 2];
  r.d = t.shape[t.ndim - 1];
  r.stride_b = t.strides[0];
  r.stride_t = t.ndim == 4 ? t.strides[1] : 0;
  r.stride_h = t.strides[t.ndim - 2];
  return r;
}

// r and out against q (decode): same dtype, same [B, Tq, Hq, D], valid layout.
absl::StatusOr<Rows> LikeQDecode(const Tensor& t, const Tensor& q, const Rows& qr) {
  PLX_RETURN_IF_ERROR(CheckSameDType(t, q));
  absl::StatusOr<Rows> r = DecodeRows(t);
  if (!r.ok()) return r.status();
  if (r->b != qr.b || r->t != qr.t || r->h != qr.h || r->d != qr.d)
    return Invalid(t.name, ": shape ", t.shape_str(), " does not match ", q.name, "'s [B, Tq, Hq, D] = [", qr.b,
                   ", ", qr.t, ", ", qr.h, ", ", qr.d, "]");
  PLX_RETURN_IF_ERROR(CheckVectorLayout(t));
  return r;
}

// k / v against q: a 16-bit tensor of q's dtype with the given rank.
absl::StatusOr<Tensor> KvTensor(const plx_tensor& t, const char* name, const Tensor& q, int ndim,
                                const char* layout) {
  absl::StatusOr<Tensor> k = Describe(t, name);
  if (!k.ok()) return k.status();
  if (k->ndim != ndim) return Invalid(name, ": ndim=", k->ndim, ": must be ", ndim, " (", layout, ")");
  PLX_RETURN_IF_ERROR(CheckSameDType(*k, q));
  PLX_RETURN_IF_ERROR(CheckVectorLayout(*k));
  return k;
}

// lse / tbar: an optional float32 output of the given shape whose rows (last dimension) are
// contiguous: the kernels index them with row stride 1.
absl::StatusOr<Tensor> StatsTensor(const plx_tensor& t, const char* name, const int64_t* want, int ndim,
                                   const char* layout) {
  absl::StatusOr<Tensor> s = Describe(t, name);
  if (!s.ok()) return s.status();
  if (s->dtype != PLX_FLOAT32) return Invalid(name, ": dtype=", DTypeName(s->dtype), ": must be float32");
  if (s->ndim != ndim) return Invalid(name, ": ndim=", s->ndim, ": must be ", ndim, " (", layout, ")");
  for (int i = 0; i < ndim; ++i)
    if (s->shape[i] != want[i])
      return Invalid(name, ": shape ", s->shape_str(), " does not match ", layout, " = ", ShapeString(want, ndim));
  if (want[ndim - 1] > 1 && s->strides[ndim - 1] != 1)
    return Invalid(name, ": strides[", ndim - 1, "]=", s->strides[ndim - 1],
                   ": rows must be contiguous (stride 1 along the last dimension)");
  if (reinterpret_cast<uintptr_t>(s->data) % 4 != 0)
    return Invalid(name, ": data=", absl::StrFormat("%p", s->data), ": must be 4-byte aligned");
  PLX_RETURN_IF_ERROR(CheckNoAliasing(*s));
  return s;
}

// lse and tbar into the call. The kernels take one pair of strides for both, so strides of
// dimensions that matter (size > 1) must agree when both are given.
absl::Status SetStats(const plx_prefill_args& a, bool packed, int64_t batch, int64_t hq, int64_t rows,
                      PrefillCall& c) {
  const int64_t shape[3] = {batch, hq, rows};
  const int nd = packed ? 2 : 3;
  const int64_t* want = packed ? shape + 1 : shape;
  const char* layout = packed ? "[Hq, Tq]" : "[B, Hq, Lq]";
  const Tensor* first = nullptr;
  Tensor lse, tbar;
  for (auto [in, name, out, ptr] : {std::tuple<const plx_tensor*, const char*, Tensor*, float**>{
                                        &a.lse, "lse", &lse, &c.params.lse},
                                    {&a.tbar, "tbar", &tbar, &c.params.tbar}}) {
    if (in->data == nullptr) continue;
    absl::StatusOr<Tensor> t = StatsTensor(*in, name, want, nd, layout);
    if (!t.ok()) return t.status();
    *out = *t;
    *ptr = static_cast<float*>(t->data);
    if (first == nullptr) {
      first = out;
      continue;
    }
    for (int i = 0; i < nd; ++i)
      if (want[i] > 1 && out->strides[i] != first->strides[i])
        return Invalid(name, ": strides[", i, "]=", out->strides[i], " differ from ", first->name, "'s ",
                       first->strides[i], " (the kernels take one layout for both)");
  }
  if (first != nullptr) {
    c.params.stats_stride_b = packed ? 0 : first->strides[0];
    c.params.stats_stride_h = first->strides[nd - 2];
  }
  return absl::OkStatus();
}

absl::Status SameShape(const Tensor& t, const Tensor& ref) {
  bool same = t.ndim == ref.ndim;
  for (int i = 0; same && i < t.ndim; ++i) same = t.shape[i] == ref.shape[i];
  if (!same)
    return Invalid(t.name, ": shape ", t.shape_str(), " does not match ", ref.name, "'s ", ref.shape_str());
  return absl::OkStatus();
}

// What decode and prefill take alike, checked and set once into the call: the options (the
// window from either spelling), the probe, and the five tensors' pointers.
template <typename CArgs, typename Call>
absl::Status SetShared(const CArgs& a, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                       Call& c) {
  PLX_RETURN_IF_ERROR(CheckOptions(a.qk_scale, a.affine, a.eps, &c.algorithm.affine));
  absl::StatusOr<int32_t> window = ResolveWindow(a.window, a.window_left, a.window_right);
  if (!window.ok()) return window.status();
  c.problem.window = *window > 0;
  c.algorithm.probe = a.r.data ? Probe::kLearned : Probe::kNone;
  c.params.q = q.data;
  c.params.r = a.r.data;
  c.params.k = k.data;
  c.params.v = v.data;
  c.params.out = out.data;
  c.params.window = *window;
  c.params.scale_log2 = ScaleLog2(a.qk_scale, c.problem.head_dim);
  c.params.eps = a.eps;
  return absl::OkStatus();
}

// plx_prefill_args.causal: 1, or 0 without a window (FlashAttention's window_size (-1, 0) is
// its causal mask, so window_right 0 is refused with it too).
absl::Status SetCausal(const plx_prefill_args& a, PrefillCall& c) {
  if (a.causal != 0 && a.causal != 1) return Invalid("causal=", a.causal, ": must be 1 (causal) or 0 (non-causal)");
  c.params.causal = a.causal;
  if (a.causal) return absl::OkStatus();
  if (c.params.window > 0)
    return Invalid("causal=0: a non-causal prefill sees every key of its sequence, but a window of ", c.params.window,
                   " keys was given (window / window_size); windows need causal=1");
  if (a.window_right == 0)
    return Invalid("window_right=0: no key after the query's position is FlashAttention's causal mask, but "
                   "causal=0; give window_size (-1, -1) or leave it unset");
  return absl::OkStatus();
}

// An explicit key (NULL or "" = the runtime's choice), checked against the call's problem.
template <typename Call>
absl::Status SetVariant(const char* key, Call& c) {
  if (key == nullptr || key[0] == '\0') return absl::OkStatus();
  PLX_RETURN_IF_ERROR(CheckVariant(key, c.problem, c.algorithm));
  c.variant_key = key;
  return absl::OkStatus();
}

}  // namespace

// A paged cache's block table [B, max_pages] against k [num_pages, page_size, Hkv, D]: the
// page size, the table and its row stride, and the keys a row of it can name.
struct PagedCache {
  int page_size = 0;
  const int* table = nullptr;
  int table_stride = 0;
  int64_t capacity = 0;  // max_pages x page_size
};
absl::StatusOr<PagedCache> DescribePagedCache(const plx_tensor& block_table, const Tensor& k, int64_t batch,
                                              const char* batch_from) {
  absl::StatusOr<Tensor> bt = Describe(block_table, "block_table");
  if (!bt.ok()) return bt.status();
  PLX_RETURN_IF_ERROR(CheckIndexTensor(*bt, 2, "[B, max_pages]"));
  if (bt->shape[0] != batch)
    return Invalid("block_table: shape[0]=", bt->shape[0], ": must equal the batch size ", batch, " (", batch_from,
                   ")");
  const int64_t page_size = k.shape[1];
  if (!IsPow2(page_size) || page_size > 1024)
    return Unsupported("k: page_size=", page_size, " (shape[1] of a paged cache): must be a power of two in 1..1024");
  if (k.shape[0] < 1) return Invalid("k: num_pages=0 (shape[0] of a paged cache): must be >= 1");
  const int64_t capacity = bt->shape[1] * page_size;
  if (capacity > kIntMax)
    return Unsupported("block_table: max_pages=", bt->shape[1], " x page_size=", page_size, " keys exceeds 2^31-1");
  if (bt->strides[0] > kIntMax) return Unsupported("block_table: strides[0]=", bt->strides[0], ": exceeds 2^31-1");
  PagedCache c;
  c.page_size = static_cast<int>(page_size);
  c.table = static_cast<const int*>(bt->data);
  c.table_stride = static_cast<int>(bt->strides[0]);
  c.capacity = capacity;
  return c;
}

// A per-sequence int32 [B] length tensor (cache_seqlens, seqused_k).
absl::StatusOr<const int*> SequenceLengths(const plx_tensor& t, const char* name, int64_t batch, const char* batch_from) {
  absl::StatusOr<Tensor> cs = Describe(t, name);
  if (!cs.ok()) return cs.status();
  PLX_RETURN_IF_ERROR(CheckIndexTensor(*cs, 1, "[B]"));
  if (cs->shape[0] != batch)
    return Invalid(name, ": shape[0]=", cs->shape[0], ": must equal the batch size ", batch, " (", batch_from, ")");
  return static_cast<const int*>(cs->data);
}

absl::StatusOr<DecodeCall> TranslateDecodeArgs(const plx_decode_args& a) {
  absl::StatusOr<Tensor> q = Describe(a.q, "q");
  if (!q.ok()) return q.status();
  absl::StatusOr<Rows> qr = DecodeRows(*q);
  if (!qr.ok()) return qr.status();
  if (q->dtype != PLX_BF16 && q->dtype != PLX_FP16)
    return Unsupported("q: dtype=", DTypeName(q->dtype), ": must be bf16 or fp16");
  PLX_RETURN_IF_ERROR(CheckVectorLayout(*q));
  PLX_RETURN_IF_ERROR(CheckHeadDim(*q));

  absl::StatusOr<Tensor> out = Describe(a.out, "out");
  if (!out.ok()) return out.status();
  absl::StatusOr<Rows> outr = LikeQDecode(*out, *q, *qr);
  if (!outr.ok()) return outr.status();
  PLX_RETURN_IF_ERROR(CheckNoAliasing(*out));

  Rows rr;
  if (a.r.data != nullptr) {  // NULL data: softmax attention
    absl::StatusOr<Tensor> r = Describe(a.r, "r");
    if (!r.ok()) return r.status();
    absl::StatusOr<Rows> rows = LikeQDecode(*r, *q, *qr);
    if (!rows.ok()) return rows.status();
    rr = *rows;
  }

  const char* kv_layout = "[B, Lmax, Hkv, D] or paged [num_pages, page_size, Hkv, D]";
  absl::StatusOr<Tensor> k = KvTensor(a.k, "k", *q, 4, kv_layout);
  if (!k.ok()) return k.status();
  if (k->shape[3] != qr->d)
    return Invalid("k: head_dim=", k->shape[3], " (shape[3]) does not match q's head_dim=", qr->d);
  PLX_RETURN_IF_ERROR(CheckHeads(*q, qr->h, *k, k->shape[2], 2));
  absl::StatusOr<Tensor> v = KvTensor(a.v, "v", *q, 4, kv_layout);
  if (!v.ok()) return v.status();
  PLX_RETURN_IF_ERROR(SameShape(*v, *k));

  DecodeCall c;
  Problem& pr = c.problem;
  PlxDecodeParams& p = c.params;
  pr.mode = Mode::kDecode;
  pr.dtype = q->dtype == PLX_BF16 ? DType::kBF16 : DType::kFP16;
  pr.num_q_heads = static_cast<int>(qr->h);
  pr.num_kv_heads = static_cast<int>(k->shape[2]);
  pr.head_dim = static_cast<int>(qr->d);
  if (qr->t > kMaxDecodeQueries)
    return Unsupported("q: shape[1]=", qr->t, ": decode kernels take at most ", kMaxDecodeQueries,
                       " query tokens per sequence (plx_decode runs more as extend)");
  pr.queries = static_cast<int>(qr->t);
  p.batch = static_cast<int>(qr->b);

  const bool paged = a.block_table.data != nullptr;
  if (paged) {
    if (a.cache_seqlens.data == nullptr)
      return Invalid("cache_seqlens: required with block_table (paged KV needs each sequence's length)");
    absl::StatusOr<PagedCache> pc = DescribePagedCache(a.block_table, *k, qr->b, "q.shape[0]");
    if (!pc.ok()) return pc.status();
    pr.kv_layout = KvLayout::kPaged;
    pr.page_size = pc->page_size;
    p.block_table = pc->table;
    p.block_table_stride = pc->table_stride;
    p.seqlen = static_cast<int>(pc->capacity);
    c.num_pages = k->shape[0];
  } else {
    if (k->shape[0] != qr->b)
      return Invalid("k: shape[0]=", k->shape[0], ": must equal the batch size ", qr->b,
                     " (q.shape[0]) for a contiguous cache; pass block_table for a paged one");
    p.seqlen = static_cast<int>(k->shape[1]);
  }
  if (a.cache_seqlens.data != nullptr) {
    absl::StatusOr<const int*> lens = SequenceLengths(a.cache_seqlens, "cache_seqlens", qr->b, "q.shape[0]");
    if (!lens.ok()) return lens.status();
    p.seqlens = *lens;
  }

  PLX_RETURN_IF_ERROR(SetShared(a, *q, *k, *v, *out, c));
  if (a.num_splits < 0) return Invalid("num_splits=", a.num_splits, ": must be >= 0 (0 = auto)");
  if (a.workspace == nullptr && a.workspace_bytes != 0)
    return Invalid("workspace_bytes=", a.workspace_bytes, ": given with a NULL workspace");
  p.q_stride_b = qr->stride_b;
  p.q_stride_h = qr->stride_h;
  p.r_stride_b = rr.stride_b;
  p.r_stride_h = rr.stride_h;
  p.o_stride_b = outr->stride_b;
  p.o_stride_h = outr->stride_h;
  p.q_stride_t = qr->stride_t;
  p.r_stride_t = rr.stride_t;
  p.o_stride_t = outr->stride_t;
  p.k_stride_0 = k->strides[0];
  p.k_stride_1 = k->strides[1];
  p.k_stride_h = k->strides[2];
  p.v_stride_0 = v->strides[0];
  p.v_stride_1 = v->strides[1];
  p.v_stride_h = v->strides[2];
  c.num_splits = a.num_splits;
  c.workspace = a.workspace;
  c.workspace_bytes = a.workspace_bytes;
  PLX_RETURN_IF_ERROR(SetVariant(a.variant, c));
  PLX_RETURN_IF_ERROR(CheckDecodeCall(c));
  return c;
}

absl::StatusOr<PrefillCall> TranslatePrefillArgs(const plx_prefill_args& a) {
  const bool packed = a.cu_seqlens_q.data != nullptr;
  const bool paged = a.block_table.data != nullptr;  // extend over a paged cache
  if (paged) {
    if (a.cu_seqlens_k.data != nullptr)
      return Invalid("cu_seqlens_k: not with a paged cache (block_table); seqused_k gives each sequence's keys");
    if (a.seqused_k.data == nullptr)
      return Invalid("seqused_k: required with block_table (each sequence's key count in the cache)");
  } else {
    if (a.seqused_k.data != nullptr) return Invalid("seqused_k: only with a paged cache (block_table)");
    if ((a.cu_seqlens_k.data != nullptr) != packed)
      return Invalid(packed ? "cu_seqlens_k" : "cu_seqlens_q",
                     ": cu_seqlens_q and cu_seqlens_k must be given together (packed layout)");
  }
  absl::StatusOr<Tensor> q = Describe(a.q, "q");
  if (!q.ok()) return q.status();
  const int nd = packed ? 3 : 4;
  if (q->ndim != nd)
    return Invalid("q: ndim=", q->ndim, packed ? ": must be 3 (packed [Tq, Hq, D] with cu_seqlens_q)"
                                               : ": must be 4 ([B, Lq, Hq, D]); packed [Tq, Hq, D] needs "
                                                 "cu_seqlens_q and cu_seqlens_k");
  if (q->dtype != PLX_BF16 && q->dtype != PLX_FP16)
    return Unsupported("q: dtype=", DTypeName(q->dtype), ": must be bf16 or fp16");
  PLX_RETURN_IF_ERROR(CheckVectorLayout(*q));
  PLX_RETURN_IF_ERROR(CheckHeadDim(*q));
  const int64_t hq = q->shape[nd - 2];
  const int64_t dim = q->shape[nd - 1];

  absl::StatusOr<Tensor> out = Describe(a.out, "out");
  if (!out.ok()) return out.status();
  PLX_RETURN_IF_ERROR(CheckSameDType(*out, *q));
  PLX_RETURN_IF_ERROR(SameShape(*out, *q));
  PLX_RETURN_IF_ERROR(CheckVectorLayout(*out));
  PLX_RETURN_IF_ERROR(CheckNoAliasing(*out));
  Tensor r;
  if (a.r.data != nullptr) {
    absl::StatusOr<Tensor> rt = Describe(a.r, "r");
    if (!rt.ok()) return rt.status();
    PLX_RETURN_IF_ERROR(CheckSameDType(*rt, *q));
    PLX_RETURN_IF_ERROR(SameShape(*rt, *q));
    PLX_RETURN_IF_ERROR(CheckVectorLayout(*rt));
    r = *rt;
  }
  const int kv_nd = paged ? 4 : nd;
  const char* kv_layout =
      paged ? "paged [num_pages, page_size, Hkv, D]" : packed ? "packed [Tk, Hkv, D]" : "[B, Lk, Hkv, D]";
  absl::StatusOr<Tensor> k = KvTensor(a.k, "k", *q, kv_nd, kv_layout);
  if (!k.ok()) return k.status();
  if (k->shape[kv_nd - 1] != dim)
    return Invalid("k: head_dim=", k->shape[kv_nd - 1], " (shape[", kv_nd - 1, "]) does not match q's head_dim=", dim);
  PLX_RETURN_IF_ERROR(CheckHeads(*q, hq, *k, k->shape[kv_nd - 2], kv_nd - 2));
  absl::StatusOr<Tensor> v = KvTensor(a.v, "v", *q, kv_nd, kv_layout);
  if (!v.ok()) return v.status();
  PLX_RETURN_IF_ERROR(SameShape(*v, *k));

  PrefillCall c;
  Problem& pr = c.problem;
  PlxPrefillParams& p = c.params;
  pr.mode = Mode::kPrefill;
  pr.dtype = q->dtype == PLX_BF16 ? DType::kBF16 : DType::kFP16;
  pr.num_q_heads = static_cast<int>(hq);
  pr.num_kv_heads = static_cast<int>(k->shape[kv_nd - 2]);
  pr.head_dim = static_cast<int>(dim);
  // Strides: batch (unused when packed), token, head; a paged cache's page, slot, head.
  auto set = [&](const Tensor& t, int n, long long& sb, long long& sl, long long& sh) {
    sb = n == 3 ? 0 : t.strides[0];
    sl = t.strides[n - 3];
    sh = t.strides[n - 2];
  };
  set(*q, nd, p.q_stride_b, p.q_stride_l, p.q_stride_h);
  if (a.r.data != nullptr) set(r, nd, p.r_stride_b, p.r_stride_l, p.r_stride_h);
  set(*k, kv_nd, p.k_stride_b, p.k_stride_l, p.k_stride_h);
  set(*v, kv_nd, p.v_stride_b, p.v_stride_l, p.v_stride_h);
  set(*out, nd, p.o_stride_b, p.o_stride_l, p.o_stride_h);

  if (packed) {
    absl::StatusOr<Tensor> cq = Describe(a.cu_seqlens_q, "cu_seqlens_q");
    if (!cq.ok()) return cq.status();
    PLX_RETURN_IF_ERROR(CheckIndexTensor(*cq, 1, "[B + 1]"));
    if (cq->shape[0] < 1) return Invalid("cu_seqlens_q: shape[0]=0: must be B + 1 >= 1");
    if (a.max_seqlen_q < 0)
      return Invalid("max_seqlen_q=", a.max_seqlen_q, ": required (>= 0) with cu_seqlens_q");
    if (a.max_seqlen_q > q->shape[0])
      return Invalid("max_seqlen_q=", a.max_seqlen_q, ": exceeds the packed q length ", q->shape[0]);
    p.batch = static_cast<int>(cq->shape[0] - 1);
    p.cu_seqlens_q = static_cast<const int*>(cq->data);
    p.seqlen_q = a.max_seqlen_q;
    c.total_q = q->shape[0];
    if (!paged) {
      absl::StatusOr<Tensor> ck = Describe(a.cu_seqlens_k, "cu_seqlens_k");
      if (!ck.ok()) return ck.status();
      PLX_RETURN_IF_ERROR(CheckIndexTensor(*ck, 1, "[B + 1]"));
      if (ck->shape[0] != cq->shape[0])
        return Invalid("cu_seqlens_k: shape[0]=", ck->shape[0], " does not match cu_seqlens_q's ", cq->shape[0]);
      if (a.max_seqlen_k < 0)
        return Invalid("max_seqlen_k=", a.max_seqlen_k, ": required (>= 0) with cu_seqlens_k");
      if (a.max_seqlen_k > k->shape[0])
        return Invalid("max_seqlen_k=", a.max_seqlen_k, ": exceeds the packed k length ", k->shape[0]);
      p.cu_seqlens_k = static_cast<const int*>(ck->data);
      p.seqlen_k = a.max_seqlen_k;
      c.total_k = k->shape[0];
    }
  } else {
    p.batch = static_cast<int>(q->shape[0]);
    p.seqlen_q = static_cast<int>(q->shape[1]);
    if (!paged) {
      if (k->shape[0] != q->shape[0])
        return Invalid("k: shape[0]=", k->shape[0], ": must equal the batch size ", q->shape[0], " (q.shape[0])");
      p.seqlen_k = static_cast<int>(k->shape[1]);
    }
  }
  if (paged) {
    const char* batch_from = packed ? "cu_seqlens_q.shape[0] - 1" : "q.shape[0]";
    absl::StatusOr<PagedCache> pc = DescribePagedCache(a.block_table, *k, p.batch, batch_from);
    if (!pc.ok()) return pc.status();
    absl::StatusOr<const int*> used = SequenceLengths(a.seqused_k, "seqused_k", p.batch, batch_from);
    if (!used.ok()) return used.status();
    if (a.max_seqlen_k < -1)
      return Invalid("max_seqlen_k=", a.max_seqlen_k, ": must be -1 (unknown: the table's capacity) or >= 0");
    if (a.max_seqlen_k > pc->capacity)
      return Invalid("max_seqlen_k=", a.max_seqlen_k, ": exceeds the block table's capacity ", pc->capacity,
                     " (max_pages x page_size)");
    pr.kv_layout = KvLayout::kPaged;
    pr.page_size = pc->page_size;
    p.block_table = pc->table;
    p.block_table_stride = pc->table_stride;
    p.seqused_k = *used;
    c.total_k = k->shape[0];  // the pool's pages: the sm_90a family's TMA maps span them
    // The kernel choice follows the live lengths when the caller knows them.
    p.seqlen_k = a.max_seqlen_k >= 0 ? a.max_seqlen_k : static_cast<int>(pc->capacity);
  }
  PLX_RETURN_IF_ERROR(SetStats(a, packed, p.batch, hq, q->shape[packed ? 0 : 1], c));
  if (a.vbar.data != nullptr) {  // out's dtype and shape, its own strides (kernel_abi.h)
    absl::StatusOr<Tensor> vb = Describe(a.vbar, "vbar");
    if (!vb.ok()) return vb.status();
    PLX_RETURN_IF_ERROR(CheckSameDType(*vb, *out));
    PLX_RETURN_IF_ERROR(SameShape(*vb, *out));
    PLX_RETURN_IF_ERROR(CheckVectorLayout(*vb));
    PLX_RETURN_IF_ERROR(CheckNoAliasing(*vb));
    PLX_RETURN_IF_ERROR(CheckDisjoint(*vb, *out));
    p.vbar = vb->data;
    set(*vb, nd, p.vbar_stride_b, p.vbar_stride_l, p.vbar_stride_h);
  }

  PLX_RETURN_IF_ERROR(SetShared(a, *q, *k, *v, *out, c));
  PLX_RETURN_IF_ERROR(SetCausal(a, c));
  PLX_RETURN_IF_ERROR(SetVariant(a.variant, c));
  PLX_RETURN_IF_ERROR(CheckPrefillCall(c));
  return c;
}

plx_status ToPlxStatus(const absl::Status& s) {
  const absl::string_view msg = s.message();
  auto contains = [&](const char* what) { return msg.find(what) != absl::string_view::npos; };
  switch (s.code()) {
    case absl::StatusCode::kOk: return PLX_OK;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kNotFound: return PLX_ERROR_INVALID_ARGUMENT;
    case absl::StatusCode::kUnimplemented:
    case absl::StatusCode::kFailedPrecondition: return PLX_ERROR_UNSUPPORTED;
    case absl::StatusCode::kUnavailable: return PLX_ERROR_NO_DEVICE;
    case absl::StatusCode::kResourceExhausted: return PLX_ERROR_OUT_OF_MEMORY;
    default: break;
  }
  // The runtime reports driver and NVRTC failures as Internal with the API's error name.
  if (contains("CUDA_ERROR_OUT_OF_MEMORY")) return PLX_ERROR_OUT_OF_MEMORY;
  if (contains("CUDA_ERROR")) return PLX_ERROR_CUDA;
  if (contains("NVRTC_ERROR")) return PLX_ERROR_COMPILE;
  return PLX_ERROR_INTERNAL;
}

}  // namespace parallax::capi
