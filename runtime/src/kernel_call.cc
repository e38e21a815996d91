#include "parallax/runtime/kernel_call.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <iterator>
#include <utility>

#include "absl/strings/str_cat.h"

namespace parallax {
namespace {

constexpr float kLog2e = 1.4426950408889634f;

// The checks decode and prefill share: sizes the kernels take, and the tensors present.
template <typename Params>
absl::Status CheckShared(const Params& params, const Problem& p) {
  const int b = params.batch;
  if (b < 0) return absl::InvalidArgumentError(absl::StrCat("batch=", b, ": must be >= 0"));
  const int hq = p.num_q_heads, hkv = p.num_kv_heads;
  if (hq <= 0 || hkv <= 0 || hq % hkv != 0)
    return absl::InvalidArgumentError(absl::StrCat(
        "num_q_heads=", hq, ", num_kv_heads=", hkv, ": need positive counts with Hq a multiple of Hkv"));
  if (p.head_dim != 64 && p.head_dim != 128 && p.head_dim != 256)
    return absl::InvalidArgumentError(absl::StrCat("head_dim=", p.head_dim, ": must be 64, 128 or 256"));
  if (!params.q || !params.k || !params.v || !params.out)
    return absl::InvalidArgumentError("q, k, v and out must be non-null device pointers");
  return absl::OkStatus();
}

template <typename Args>
void SetProblem(const Args& a, Mode mode, Problem& p, Algorithm& alg) {
  p.mode = mode;
  p.dtype = a.dtype;
  p.head_dim = a.head_dim;
  p.num_q_heads = a.num_q_heads;
  p.num_kv_heads = a.num_kv_heads;
  p.window = a.window > 0;
  alg.probe = a.r ? Probe::kLearned : Probe::kNone;
  alg.affine = a.affine;
}

// The parameters decode and prefill share, from either kind of arguments.
template <typename Args, typename Params>
void SetSharedParams(const Args& a, Params& p) {
  p.q = a.q; p.r = a.r; p.k = a.k; p.v = a.v; p.out = a.out;
  p.batch = a.batch;
  p.window = a.window;
  p.scale_log2 = ScaleLog2(a.qk_scale, a.head_dim);
  p.eps = a.eps;
}

// lse and tbar: CTAs of different heads and batches write their rows concurrently, so the
// [B, Hq, rows] layout the strides describe must not overlap itself (as the C API requires
// of any output). Rows are contiguous; packed rows run over the packed total.
absl::Status CheckStats(const PrefillCall& c) {
  const PlxPrefillParams& p = c.params;
  if (!p.lse && !p.tbar) return absl::OkStatus();
  for (const auto& [name, ptr] : {std::pair<const char*, float*>{"lse", p.lse}, {"tbar", p.tbar}})
    if (reinterpret_cast<uintptr_t>(ptr) % alignof(float) != 0)
      return absl::InvalidArgumentError(absl::StrCat(name, ": must be 4-byte aligned (float)"));
  if (p.stats_stride_b < 0 || p.stats_stride_h < 0)
    return absl::InvalidArgumentError(absl::StrCat("stats_stride_b=", p.stats_stride_b, ", stats_stride_h=",
                                                   p.stats_stride_h, ": must be >= 0"));
  const bool packed = p.cu_seqlens_q != nullptr;
  if (packed && c.total_q <= 0 && p.seqlen_q > 0)
    return absl::InvalidArgumentError("total_q: packed lse/tbar need the rows of the packed q ([Hq, total_q])");
  // {size, stride} of rows, heads and (padded) batches; each stride must clear the span of
  // the next smaller one.
  std::pair<int64_t, int64_t> dims[3] = {{packed ? c.total_q : p.seqlen_q, 1},
                                         {c.problem.num_q_heads, p.stats_stride_h},
                                         {packed ? 1 : p.batch, p.stats_stride_b}};
  std::sort(std::begin(dims), std::end(dims), [](const auto& a, const auto& b) { return a.second < b.second; });
  int64_t span = 0;  // elements covered by the smaller dimensions
  for (const auto& [size, stride] : dims) {
    if (size <= 1) continue;
    if (stride == 0 || stride < span)
      return absl::InvalidArgumentError(absl::StrCat(
          "stats_stride_b=", p.stats_stride_b, ", stats_stride_h=", p.stats_stride_h,
          ": lse/tbar rows of different heads or batches would overlap (rows ", packed ? c.total_q : p.seqlen_q,
          ", heads ", c.problem.num_q_heads, packed ? ")" : absl::StrCat(", batch ", p.batch, ")")));
    if (__builtin_mul_overflow(stride, size, &span)) span = INT64_MAX;
  }
  return absl::OkStatus();
}

}  // namespace

float ScaleLog2(float qk_scale, int head_dim) {
  const float tau = qk_scale < 0.f ? 1.f / std::sqrt(static_cast<float>(head_dim)) : qk_scale;
  return tau * kLog2e;
}

PlxDecodeParams DecodeParams(const DecodeArgs& a) {
  PlxDecodeParams p{};
  SetSharedParams(a, p);
  p.seqlens = a.seqlens;
  p.block_table = a.block_table;
  p.q_stride_b = a.q_stride_b; p.q_stride_h = a.q_stride_h;
  p.r_stride_b = a.r_stride_b; p.r_stride_h = a.r_stride_h;
  p.o_stride_b = a.o_stride_b; p.o_stride_h = a.o_stride_h;
  p.q_stride_t = a.q_stride_t; p.r_stride_t = a.r_stride_t; p.o_stride_t = a.o_stride_t;
  p.k_stride_0 = a.k_stride_0; p.k_stride_1 = a.k_stride_1; p.k_stride_h = a.k_stride_h;
  p.v_stride_0 = a.v_stride_0; p.v_stride_1 = a.v_stride_1; p.v_stride_h = a.v_stride_h;
  p.block_table_stride = a.block_table_stride;
  p.seqlen = a.seqlen;
  return p;
}

PlxPrefillParams PrefillParams(const PrefillArgs& a) {
  PlxPrefillParams p{};
  SetSharedParams(a, p);
  p.cu_seqlens_q = a.cu_seqlens_q;
  p.cu_seqlens_k = a.cu_seqlens_k;
  p.q_stride_b = a.q_stride_b; p.q_stride_l = a.q_stride_l; p.q_stride_h = a.q_stride_h;
  p.r_stride_b = a.r_stride_b; p.r_stride_l = a.r_stride_l; p.r_stride_h = a.r_stride_h;
  p.k_stride_b = a.k_stride_b; p.k_stride_l = a.k_stride_l; p.k_stride_h = a.k_stride_h;
  p.v_stride_b = a.v_stride_b; p.v_stride_l = a.v_stride_l; p.v_stride_h = a.v_stride_h;
  p.o_stride_b = a.o_stride_b; p.o_stride_l = a.o_stride_l; p.o_stride_h = a.o_stride_h;
  p.seqlen_q = a.seqlen_q;
  p.seqlen_k = a.seqlen_k;
  p.block_table = a.block_table;
  p.block_table_stride = a.block_table_stride;
  p.seqused_k = a.seqused_k;
  p.lse = a.lse;
  p.tbar = a.tbar;
  p.stats_stride_b = a.stats_stride_b;
  p.stats_stride_h = a.stats_stride_h;
  if ((a.lse || a.tbar) && a.stats_stride_b == 0 && a.stats_stride_h == 0) {  // contiguous
    p.stats_stride_h = a.cu_seqlens_q ? a.total_q : a.seqlen_q;
    p.stats_stride_b = a.cu_seqlens_q ? 0 : int64_t{a.num_q_heads} * p.stats_stride_h;
  }
  if (a.vbar) {  // all strides 0: out's
    const bool out_strides = a.vbar_stride_b == 0 && a.vbar_stride_l == 0 && a.vbar_stride_h == 0;
    p.vbar = a.vbar;
    p.vbar_stride_b = out_strides ? a.o_stride_b : a.vbar_stride_b;
    p.vbar_stride_l = out_strides ? a.o_stride_l : a.vbar_stride_l;
    p.vbar_stride_h = out_strides ? a.o_stride_h : a.vbar_stride_h;
  }
  p.causal = a.causal ? 1 : 0;
  return p;
}

DecodeCall ToDecodeCall(const DecodeArgs& a) {
  DecodeCall c;
  SetProblem(a, Mode::kDecode, c.problem, c.algorithm);
  c.problem.kv_layout = a.block_table ? KvLayout::kPaged : KvLayout::kContiguous;
  c.problem.page_size = a.page_size;  // without a block table CheckDecodeCall refuses it
  c.problem.queries = a.queries;
  c.params = DecodeParams(a);
  c.variant_key = a.variant_key;
  c.num_splits = a.num_splits;
  c.workspace = a.workspace;
  c.workspace_bytes = a.workspace_bytes;
  c.num_pages = a.num_pages;
  return c;
}

PrefillCall ToPrefillCall(const PrefillArgs& a) {
  PrefillCall c;
  SetProblem(a, Mode::kPrefill, c.problem, c.algorithm);
  c.problem.kv_layout = a.block_table ? KvLayout::kPaged : KvLayout::kContiguous;
  c.problem.page_size = a.page_size;  // without a block table CheckPrefillCall refuses it
  c.params = PrefillParams(a);
  c.variant_key = a.variant_key;
  c.total_q = a.total_q;
  c.total_k = a.total_k;
  return c;
}

absl::Status CheckDecodeCall(const DecodeCall& c) {
  const PlxDecodeParams& p = c.params;
  if (absl::Status s = CheckShared(p, c.problem); !s.ok()) return s;
  if (p.seqlen < 0) return absl::InvalidArgumentError(absl::StrCat("seqlen=", p.seqlen, ": must be >= 0"));
  if (c.problem.queries < 1 || c.problem.queries > kMaxDecodeQueries)
    return absl::InvalidArgumentError(absl::StrCat("queries=", c.problem.queries, ": must be in 1..", kMaxDecodeQueries,
                                                   " (query tokens per sequence)"));
  if (p.window < 0) return absl::InvalidArgumentError(absl::StrCat("window=", p.window, ": must be >= 0"));
  if (c.num_splits < 0 || c.num_splits > 256)
    return absl::InvalidArgumentError(absl::StrCat("num_splits=", c.num_splits, ": must be in 0..256 (0 = auto)"));
  if (p.block_table) {
    if (!p.seqlens)
      return absl::InvalidArgumentError("paged KV needs cache_seqlens (seqlens) as well as block_table");
  } else if (c.problem.page_size != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_size=", c.problem.page_size, ": given without a block_table"));
  }
  return absl::OkStatus();
}

absl::Status CheckPrefillCall(const PrefillCall& c) {
  const PlxPrefillParams& p = c.params;
  if (absl::Status s = CheckShared(p, c.problem); !s.ok()) return s;
  if (p.seqlen_q < 0 || p.seqlen_k < 0) return absl::InvalidArgumentError("seqlen_q and seqlen_k must be >= 0");
  if (p.block_table) {
    if (!p.seqused_k) return absl::InvalidArgumentError("paged KV needs seqused_k as well as block_table");
    if (p.cu_seqlens_k)
      return absl::InvalidArgumentError("cu_seqlens_k: not with a paged cache (seqused_k gives the key counts)");
    if (p.block_table_stride < 1)
      return absl::InvalidArgumentError(
          absl::StrCat("block_table_stride=", p.block_table_stride, ": must be >= 1 (max pages per sequence)"));
  } else {
    if (p.seqused_k) return absl::InvalidArgumentError("seqused_k: only with a paged cache (block_table)");
    if (c.problem.page_size != 0)
      return absl::InvalidArgumentError(
          absl::StrCat("page_size=", c.problem.page_size, ": given without a block_table"));
    if ((p.cu_seqlens_q == nullptr) != (p.cu_seqlens_k == nullptr))
      return absl::InvalidArgumentError("cu_seqlens_q and cu_seqlens_k must be given together");
  }
  if (p.window < 0) return absl::InvalidArgumentError(absl::StrCat("window=", p.window, ": must be >= 0"));
  if (p.causal != 0 && p.causal != 1)
    return absl::InvalidArgumentError(absl::StrCat("causal=", p.causal, ": must be 1 (causal) or 0 (non-causal)"));
  if (!p.causal && p.window > 0)
    return absl::InvalidArgumentError(absl::StrCat("causal=0: a non-causal prefill sees every key; window=", p.window,
                                                   " needs the causal mask (give window 0)"));
  if (p.vbar && reinterpret_cast<uintptr_t>(p.vbar) % 16 != 0)
    return absl::InvalidArgumentError("vbar: must be 16-byte aligned (the kernels store rows with vector stores)");
  return CheckStats(c);
}

}  // namespace parallax
