// The C API's prefill backward (parallax.h): plx_prefill_backward_args_init,
// plx_prefill_backward_workspace_size, plx_prefill_backward_plan_info, plx_prefill_backward.
// The tensors are checked like plx_prefill's (Describe, CheckVectorLayout, CheckNoAliasing)
// and become the runtime's PrefillBackwardArgs (parallax/runtime/backward.h), whose own
// checks run last.
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "c_api_abi.h"
#include "c_api_entry.h"
#include "c_api_internal.h"
#include "parallax/parallax.h"
#include "parallax/runtime/backward.h"

namespace parallax::capi {

namespace {

#define PLX_BWD_RETURN_IF_ERROR(expr)           \
  do {                                          \
    if (absl::Status s_ = (expr); !s_.ok()) return s_; \
  } while (0)

// A 16-bit row tensor: [B, L, H, D] padded or [T, H, D] packed, as PlxBwdRows (strides of
// size-1 dimensions dropped: they are never stepped).
absl::StatusOr<PlxBwdRows> Rows(const plx_tensor& t, const char* name, bool packed, bool output,
                                const int64_t (&shape)[4], Tensor* out_desc = nullptr) {
  absl::StatusOr<Tensor> d = Describe(t, name);
  if (!d.ok()) return d.status();
  const int want = packed ? 3 : 4;
  if (d->ndim != want)
    return Invalid(name, ": shape ", d->shape_str(), ": must have ", want, " dimensions (",
                   packed ? "[T, H, D] with cu_seqlens" : "[B, L, H, D]", ")");
  for (int i = 0; i < want; ++i)
    if (shape[i] >= 0 && d->shape[i] != shape[i])
      return Invalid(name, ": shape ", d->shape_str(), ": dimension ", i, " must be ", shape[i]);
  if (d->dtype != PLX_BF16 && d->dtype != PLX_FP16) return Invalid(name, ": dtype must be bf16 or fp16");
  PLX_BWD_RETURN_IF_ERROR(CheckVectorLayout(*d));
  if (output) PLX_BWD_RETURN_IF_ERROR(CheckNoAliasing(*d));
  const auto st = [&](int i) { return d->shape[i] > 1 ? d->strides[i] : 0; };
  PlxBwdRows r{t.data, packed ? 0 : st(0), st(packed ? 0 : 1), st(packed ? 1 : 2)};
  if (out_desc) *out_desc = *d;
  return r;
}

absl::StatusOr<PrefillBackwardArgs> Translate(const plx_prefill_backward_args& a) {
  PrefillBackwardArgs o;
  const bool packed = a.cu_seqlens_q.data != nullptr;
  if (packed != (a.cu_seqlens_k.data != nullptr))
    return Invalid("cu_seqlens_k: given exactly when cu_seqlens_q is");
  absl::StatusOr<Tensor> q = Describe(a.q, "q");
  if (!q.ok()) return q.status();
  absl::StatusOr<Tensor> k = Describe(a.k, "k");
  if (!k.ok()) return k.status();
  const int want = packed ? 3 : 4;
  if (q->ndim != want || k->ndim != want)
    return Invalid(q->ndim != want ? "q" : "k", ": must have ", want, " dimensions (",
                   packed ? "[T, H, D] with cu_seqlens" : "[B, L, H, D]", ")");
  const int64_t d = q->shape[want - 1], hq = q->shape[want - 2], hkv = k->shape[want - 2];
  int64_t qshape[4] = {-1, -1, hq, d}, kshape[4] = {-1, -1, hkv, d};
  if (packed) {
    absl::StatusOr<Tensor> cq = Describe(a.cu_seqlens_q, "cu_seqlens_q");
    if (!cq.ok()) return cq.status();
    absl::StatusOr<Tensor> ck = Describe(a.cu_seqlens_k, "cu_seqlens_k");
    if (!ck.ok()) return ck.status();
    if (cq->dtype != PLX_INT32 || cq->ndim != 1 || cq->shape[0] < 1)
      return Invalid("cu_seqlens_q: must be int32 [B + 1]");
    if (ck->dtype != PLX_INT32 || ck->ndim != 1 || ck->shape[0] != cq->shape[0])
      return Invalid("cu_seqlens_k: must be int32 [B + 1] like cu_seqlens_q");
    if (cq->strides[0] != 1 || ck->strides[0] != 1) return Invalid("cu_seqlens_q: must be contiguous");
    if (a.max_seqlen_q < 0 || a.max_seqlen_k < 0)
      return Invalid("max_seqlen_k: packed sequences need max_seqlen_q and max_seqlen_k (the longest)");
    o.batch = static_cast<int>(cq->shape[0] - 1);
    o.total_q = q->shape[0];
    o.seqlen_q = a.max_seqlen_q;
    o.seqlen_k = a.max_seqlen_k;
    o.cu_seqlens_q = static_cast<const int*>(a.cu_seqlens_q.data);
    o.cu_seqlens_k = static_cast<const int*>(a.cu_seqlens_k.data);
    qshape[0] = q->shape[0];
    kshape[0] = k->shape[0];
    qshape[1] = hq; qshape[2] = d; kshape[1] = hkv; kshape[2] = d;
  } else {
    o.batch = static_cast<int>(q->shape[0]);
    o.seqlen_q = static_cast<int>(q->shape[1]);
    o.seqlen_k = static_cast<int>(k->shape[1]);
    qshape[0] = kshape[0] = q->shape[0];
    qshape[1] = q->shape[1];
    kshape[1] = k->shape[1];
  }
  o.num_q_heads = static_cast<int>(hq);
  o.num_kv_heads = static_cast<int>(hkv);
  o.head_dim = static_cast<int>(d);
  o.dtype = q->dtype == PLX_FP16 ? DType::kFP16 : DType::kBF16;
  const bool learned = a.r.data != nullptr;
  Tensor qd;
  struct Slot {
    const plx_tensor* t;
    const char* name;
    const int64_t* shape;
    bool output, present;
    PlxBwdRows* dst;
  };
  const Slot slots[] = {
      {&a.q, "q", qshape, false, true, &o.q},         {&a.r, "r", qshape, false, learned, &o.r},
      {&a.k, "k", kshape, false, true, &o.k},         {&a.v, "v", kshape, false, true, &o.v},
      {&a.out, "out", qshape, false, true, &o.out},   {&a.dout, "dout", qshape, false, true, &o.dout},
      {&a.vbar, "vbar", qshape, false, learned || a.vbar.data != nullptr, &o.vbar},
      {&a.dq, "dq", qshape, true, true, &o.dq},       {&a.dr, "dr", qshape, true, learned, &o.dr},
      {&a.dk, "dk", kshape, true, true, &o.dk},       {&a.dv, "dv", kshape, true, true, &o.dv},
  };
  for (const Slot& s : slots) {
    if (!s.present) continue;
    const int64_t(&shape)[4] = *reinterpret_cast<const int64_t(*)[4]>(s.shape);
    Tensor desc;
    absl::StatusOr<PlxBwdRows> r = Rows(*s.t, s.name, packed, s.output, shape, &desc);
    if (!r.ok()) return r.status();
    if (s.t == &a.q) qd = desc;
    else PLX_BWD_RETURN_IF_ERROR(CheckSameDType(desc, qd));
    *s.dst = *r;
  }
  // The statistics: float32 [B, Hq, Lq] or [Hq, Tq], rows contiguous, shared strides.
  const auto stats = [&](const plx_tensor& t, const char* name) -> absl::StatusOr<Tensor> {
    absl::StatusOr<Tensor> s = Describe(t, name);
    if (!s.ok()) return s.status();
    if (s->dtype != PLX_FLOAT32) return Invalid(name, ": dtype must be float32");
    const bool ok = packed ? s->ndim == 2 && s->shape[0] == hq && s->shape[1] == o.total_q
                           : s->ndim == 3 && s->shape[0] == o.batch && s->shape[1] == hq && s->shape[2] == o.seqlen_q;
    if (!ok) return Invalid(name, ": shape ", s->shape_str(), ": must be ", packed ? "[Hq, Tq]" : "[B, Hq, Lq]");
    if (s->strides[s->ndim - 1] != 1) return Invalid(name, ": rows must be contiguous (last stride 1)");
    return s;
  };
  absl::StatusOr<Tensor> lse = stats(a.lse, "lse");
  if (!lse.ok()) return lse.status();
  o.lse = static_cast<const float*>(a.lse.data);
  o.stats_stride_b = packed ? 0 : lse->strides[0];
  o.stats_stride_h = packed ? lse->strides[0] : lse->strides[1];
  if (learned) {
    absl::StatusOr<Tensor> tbar = stats(a.tbar, "tbar");
    if (!tbar.ok()) return tbar.status();
    for (int i = 0; i < tbar->ndim; ++i)
      if (tbar->strides[i] != lse->strides[i]) return Invalid("tbar: must share lse's strides");
    o.tbar = static_cast<const float*>(a.tbar.data);
  }
  if (a.affine != PLX_AFFINE_PLAIN && a.affine != PLX_AFFINE_AMPLIFIED)
    return Invalid("affine=", static_cast<int>(a.affine), ": not a plx_affine value");
  o.affine = a.affine == PLX_AFFINE_AMPLIFIED ? Affine::kAmplified : Affine::kPlain;
  o.qk_scale = a.qk_scale;
  o.window = a.window;
  o.eps = a.eps;
  if (a.causal != 0 && a.causal != 1) return Invalid("causal=", a.causal, ": must be 0 or 1");
  o.causal = a.causal == 1;
  o.variant_key = a.variant ? std::string(a.variant) : std::string();
  o.workspace = a.workspace;
  o.workspace_bytes = a.workspace_bytes;
  PLX_BWD_RETURN_IF_ERROR(CheckPrefillBackward(o));
  absl::StatusOr<Variant> v = PlanPrefillBackward(o);  // problem fields (head_dim, heads) checked here
  if (!v.ok()) return Unsupported(v.status().message());
  return o;
}

}  // namespace
}  // namespace parallax::capi

extern "C" {

PLX_API void plx_prefill_backward_args_init(plx_prefill_backward_args* args) {
  if (args == nullptr) return;
  std::memset(args, 0, sizeof(*args));
  args->struct_size = sizeof(*args);
  args->max_seqlen_q = args->max_seqlen_k = -1;
  args->qk_scale = -1.f;
  args->affine = PLX_AFFINE_PLAIN;
  args->eps = 1e-6f;
  args->causal = 1;
}

PLX_API plx_status plx_prefill_backward_workspace_size(const plx_prefill_backward_args* args, size_t* bytes) {
  static constexpr const char* fn = "plx_prefill_backward_workspace_size";
  return parallax::capi::Guard(fn, [&]() -> plx_status {
    plx_prefill_backward_args local;
    if (absl::Status s = parallax::capi::ReadStruct(args, local); !s.ok()) return parallax::capi::Fail(fn, s);
    if (args == nullptr) return parallax::capi::Fail(PLX_ERROR_INVALID_ARGUMENT, fn, "args is NULL");
    if (bytes == nullptr) return parallax::capi::Fail(PLX_ERROR_INVALID_ARGUMENT, fn, "bytes: output pointer is NULL");
    absl::StatusOr<parallax::PrefillBackwardArgs> a = parallax::capi::Translate(*args);
    if (!a.ok()) return parallax::capi::Fail(fn, a.status());
    *bytes = parallax::PrefillBackwardWorkspaceBytes(*a);
    return PLX_OK;
  });
}

PLX_API plx_status plx_prefill_backward_plan_info(plx_context* ctx, const plx_prefill_backward_args* args,
                                                  plx_plan_info* info) {
  static constexpr const char* fn = "plx_prefill_backward_plan_info";
  return parallax::capi::Guard(fn, [&]() -> plx_status {
    plx_prefill_backward_args local;
    if (absl::Status s = parallax::capi::ReadStruct(args, local); !s.ok()) return parallax::capi::Fail(fn, s);
    if (absl::Status s = parallax::capi::CheckStructSize(info); !s.ok()) return parallax::capi::Fail(fn, s);
    if (args == nullptr) return parallax::capi::Fail(PLX_ERROR_INVALID_ARGUMENT, fn, "args is NULL");
    if (info == nullptr) return parallax::capi::Fail(PLX_ERROR_INVALID_ARGUMENT, fn, "info: output pointer is NULL");
    absl::StatusOr<parallax::PrefillBackwardArgs> a = parallax::capi::Translate(*args);
    if (!a.ok()) return parallax::capi::Fail(fn, a.status());
    if (ctx == nullptr || !ctx->runtime) return parallax::capi::Fail(PLX_ERROR_INVALID_ARGUMENT, fn, "ctx is NULL");
    parallax::Choice choice = parallax::Choice::kDefault;
    absl::StatusOr<parallax::Variant> v = parallax::PlanPrefillBackward(*ctx->runtime, *a, &choice);
    if (!v.ok()) return parallax::capi::Fail(fn, v.status());
    return parallax::capi::FillPlanInfo(fn, v->Key(), choice, 1, parallax::PrefillBackwardWorkspaceBytes(*a), info);
  });
}

PLX_API plx_status plx_prefill_backward(plx_context* ctx, const plx_prefill_backward_args* args, void* stream) {
  static constexpr const char* fn = "plx_prefill_backward";
  return parallax::capi::Guard(fn, [&]() -> plx_status {
    plx_prefill_backward_args local;
    if (absl::Status s = parallax::capi::ReadStruct(args, local); !s.ok()) return parallax::capi::Fail(fn, s);
    if (args == nullptr) return parallax::capi::Fail(PLX_ERROR_INVALID_ARGUMENT, fn, "args is NULL");
    absl::StatusOr<parallax::PrefillBackwardArgs> a = parallax::capi::Translate(*args);
    if (!a.ok()) return parallax::capi::Fail(fn, a.status());
    if (ctx == nullptr || !ctx->runtime) return parallax::capi::Fail(PLX_ERROR_INVALID_ARGUMENT, fn, "ctx is NULL");
    // The runtime's choice: the key, else the tuned config of the call's prefill bucket (the
    // runtime's memo spares the DB on repeated calls), else the default.
    absl::StatusOr<parallax::Variant> v = parallax::PlanPrefillBackward(*ctx->runtime, *a);
    if (!v.ok()) return parallax::capi::Fail(fn, v.status());
    absl::Status s = parallax::RunPrefillBackward(*ctx->runtime, *v, *a, static_cast<CUstream>(stream));
    return s.ok() ? PLX_OK : parallax::capi::Fail(fn, s);
  });
}

}  // extern "C"
