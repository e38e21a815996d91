// Whether a plan's run poses the plan's problem. The tensors' dtypes and shapes and the options
// that pick the kernel must repeat; what only reaches the kernel's parameters (data pointers,
// strides, qk_scale, eps, the workspace) is the run's own. Comparing the arguments rather
// than the translated problems keeps every difference nameable by its C field.
#include <cstring>
#include <initializer_list>

#include "c_api_internal.h"

namespace parallax::capi {
namespace {

template <typename Args>
struct TensorField {
  const char* name;
  plx_tensor Args::*member;
};
template <typename Args>
struct IntField {
  const char* name;
  int32_t Args::*member;
};

absl::Status SameTensor(const char* name, const plx_tensor& plan, const plx_tensor& run) {
  const bool planned = plan.data != nullptr, given = run.data != nullptr;
  if (planned != given)
    return Invalid(name, given ? ": given, but the plan was made without it" : ": absent, but the plan was made with it");
  if (!given) return absl::OkStatus();
  if (run.dtype != plan.dtype)
    return Invalid(name, ": dtype=", DTypeName(run.dtype), " differs from the plan's ", DTypeName(plan.dtype));
  bool same = run.ndim == plan.ndim;
  for (int i = 0; same && i < run.ndim && i < PLX_MAX_DIMS; ++i) same = run.shape[i] == plan.shape[i];
  if (!same) {
    const int rn = run.ndim < 0 || run.ndim > PLX_MAX_DIMS ? 0 : run.ndim;  // validation refused others
    return Invalid(name, ": shape ", ShapeString(run.shape, rn), " differs from the plan's ",
                   ShapeString(plan.shape, plan.ndim));
  }
  return absl::OkStatus();
}

template <typename Args>
absl::Status SameProblem(const Args& plan, const Args& run, std::initializer_list<TensorField<Args>> tensors,
                         std::initializer_list<IntField<Args>> ints) {
  for (const TensorField<Args>& t : tensors)
    if (absl::Status s = SameTensor(t.name, plan.*t.member, run.*t.member); !s.ok()) return s;
  for (const IntField<Args>& f : ints)
    if (run.*f.member != plan.*f.member)
      return Invalid(f.name, "=", run.*f.member, " differs from the plan's ", plan.*f.member);
  if (run.affine != plan.affine)
    return Invalid("affine=", static_cast<int>(run.affine), " differs from the plan's ", static_cast<int>(plan.affine));
  const char* rv = run.variant ? run.variant : "";
  const char* pv = plan.variant ? plan.variant : "";
  if (std::strcmp(rv, pv) != 0)
    return Invalid("variant: '", rv, "' differs from the plan's '", pv, "' ('' = the runtime's choice)");
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckRunMatchesPlan(const plx_decode_args& plan, const plx_decode_args& run) {
  using A = plx_decode_args;
  return SameProblem<A>(plan, run,
                        {{"q", &A::q}, {"r", &A::r}, {"k", &A::k}, {"v", &A::v}, {"out", &A::out},
                         {"block_table", &A::block_table}, {"cache_seqlens", &A::cache_seqlens},
                         {"lse", &A::lse}, {"tbar", &A::tbar}, {"vbar", &A::vbar}},
                        {{"window", &A::window}, {"window_left", &A::window_left},
                         {"window_right", &A::window_right}, {"num_splits", &A::num_splits},
                         {"max_seqlen_k", &A::max_seqlen_k}});
}

absl::Status CheckRunMatchesPlan(const plx_prefill_args& plan, const plx_prefill_args& run) {
  using A = plx_prefill_args;
  return SameProblem<A>(plan, run,
                        {{"q", &A::q}, {"r", &A::r}, {"k", &A::k}, {"v", &A::v}, {"out", &A::out},
                         {"cu_seqlens_q", &A::cu_seqlens_q}, {"cu_seqlens_k", &A::cu_seqlens_k},
                         {"lse", &A::lse}, {"tbar", &A::tbar}, {"block_table", &A::block_table},
                         {"seqused_k", &A::seqused_k}, {"vbar", &A::vbar}},
                        {{"max_seqlen_q", &A::max_seqlen_q}, {"max_seqlen_k", &A::max_seqlen_k},
                         {"window", &A::window}, {"window_left", &A::window_left},
                         {"window_right", &A::window_right}, {"causal", &A::causal}});
}

}  // namespace parallax::capi
