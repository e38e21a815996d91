// The prefill backward's host side: checks, the variant, and the three launches.
#include "parallax/runtime/backward.h"

#include <cmath>
#include <cstdint>
#include <optional>

#include "absl/strings/str_cat.h"
#include "parallax/codegen/kernel_family.h"
#include "parallax/runtime/cuda_driver.h"
#include "parallax/runtime/runtime.h"
#include "loaded_kernel.h"

namespace parallax {
namespace {

constexpr int kRowWarps = 4;  // prefill_bwd's per-row kernels: 4 warps, one row each (rows.cuh)
constexpr const char* kPostprocess = "plx_bwd_postprocess";

absl::Status Bad(absl::string_view field, absl::string_view rule) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", rule));
}

// The kernels read 16-byte chunks (cp.async) and 16-bit pairs: 16-byte aligned data, non-last
// strides multiples of 8 elements.
absl::Status CheckRows(const char* name, const PlxBwdRows& t, bool required) {
  if (t.data == nullptr) return required ? Bad(name, "required (data is NULL)") : absl::OkStatus();
  if (reinterpret_cast<uintptr_t>(t.data) % 16 != 0) return Bad(name, "data must be 16-byte aligned");
  if (t.stride_b % 8 != 0 || t.stride_l % 8 != 0 || t.stride_h % 8 != 0)
    return Bad(name, absl::StrCat("strides (", t.stride_b, ", ", t.stride_l, ", ", t.stride_h,
                                  ") must be multiples of 8 elements"));
  return absl::OkStatus();
}

}  // namespace

Problem BackwardProblemOf(const PrefillBackwardArgs& a) {
  Problem p;
  p.mode = Mode::kBackward;
  p.dtype = a.dtype;
  p.head_dim = a.head_dim;
  p.num_q_heads = a.num_q_heads;
  p.num_kv_heads = a.num_kv_heads;
  p.window = a.window > 0;
  return p;
}

Algorithm BackwardAlgorithmOf(const PrefillBackwardArgs& a) {
  const bool learned = a.r.data != nullptr;
  return Algorithm{learned ? Probe::kLearned : Probe::kNone, learned ? a.affine : Affine::kPlain};
}

int64_t BackwardTokensQ(const PrefillBackwardArgs& a) {
  return a.cu_seqlens_q ? a.total_q : static_cast<int64_t>(a.batch) * a.seqlen_q;
}

size_t PrefillBackwardWorkspaceBytes(const PrefillBackwardArgs& a) {
  const size_t rows = static_cast<size_t>(BackwardTokensQ(a)) * static_cast<size_t>(a.num_q_heads);
  const size_t per_row = static_cast<size_t>(a.head_dim) * (a.r.data ? 2 : 1) + 8;
  return rows * per_row * sizeof(float);
}

absl::Status CheckPrefillBackward(const PrefillBackwardArgs& a) {
  if (a.batch < 0) return Bad("batch", "must be >= 0");
  if (a.seqlen_q < 0 || a.seqlen_k < 0) return Bad(a.seqlen_q < 0 ? "seqlen_q" : "seqlen_k", "must be >= 0");
  if ((a.cu_seqlens_q == nullptr) != (a.cu_seqlens_k == nullptr))
    return Bad("cu_seqlens_k", "cu_seqlens_q and cu_seqlens_k are given together or not at all");
  if (a.cu_seqlens_q && a.total_q < 0) return Bad("total_q", "must be >= 0");
  if (!a.causal && a.window > 0) return Bad("window", "a non-causal backward takes no window");
  if (a.window < 0) return Bad("window", "must be >= 0");
  if (a.affine == Affine::kAmplified && !(a.eps > 0)) return Bad("eps", "must be > 0 for the amplified affine");
  const bool learned = a.r.data != nullptr;
  for (auto [name, t] : {std::pair<const char*, const PlxBwdRows*>{"q", &a.q}, {"k", &a.k}, {"v", &a.v},
                         {"out", &a.out}, {"dout", &a.dout}, {"dq", &a.dq}, {"dk", &a.dk}, {"dv", &a.dv}})
    if (absl::Status s = CheckRows(name, *t, true); !s.ok()) return s;
  if (absl::Status s = CheckRows("r", a.r, false); !s.ok()) return s;
  if (absl::Status s = CheckRows("dr", a.dr, learned); !s.ok()) return s;
  if (absl::Status s = CheckRows("vbar", a.vbar, learned); !s.ok())
    return learned && a.vbar.data == nullptr ? Bad("vbar", "required with a probe (r given): the forward's vbar") : s;
  if (a.lse == nullptr) return Bad("lse", "required (the forward's statistics)");
  if (learned && a.tbar == nullptr) return Bad("tbar", "required with a probe (r given)");
  if (reinterpret_cast<uintptr_t>(a.lse) % 4 || reinterpret_cast<uintptr_t>(a.tbar) % 4)
    return Bad(a.lse && reinterpret_cast<uintptr_t>(a.lse) % 4 ? "lse" : "tbar", "must be 4-byte aligned");
  return absl::OkStatus();
}

ShapeBucket BackwardBucketOf(const PrefillBackwardArgs& a) {
  return PrefillBucketFor(a.batch, a.seqlen_q, a.seqlen_k);
}

namespace {

// The checks and the explicit key; nullopt when the call names no key (the tuned rule then).
absl::StatusOr<std::optional<Variant>> ExplicitBackward(const PrefillBackwardArgs& a) {
  if (absl::Status s = CheckPrefillBackward(a); !s.ok()) return s;
  if (a.variant_key.empty()) return std::optional<Variant>();
  const Problem p = BackwardProblemOf(a);
  const Algorithm alg = BackwardAlgorithmOf(a);
  absl::StatusOr<Variant> v = Variant::Parse(a.variant_key);
  if (!v.ok()) return v.status();
  if (v->problem() != p || v->algorithm() != alg)
    return Bad("variant_key", absl::StrCat("'", a.variant_key, "' is not for this call's problem ", ProblemKey(p, alg)));
  return std::optional<Variant>(*std::move(v));
}

}  // namespace

absl::StatusOr<Variant> PlanPrefillBackward(const PrefillBackwardArgs& a, const TunedLookupFn& lookup, int sm,
                                            Choice* choice) {
  absl::StatusOr<std::optional<Variant>> given = ExplicitBackward(a);
  if (!given.ok()) return given.status();
  Choice chose = Choice::kExplicit;
  absl::StatusOr<Variant> v = *given ? **given
                                     : ChooseTunedOrDefault(lookup, BackwardProblemOf(a), BackwardAlgorithmOf(a),
                                                            BackwardBucketOf(a), sm, &chose);
  if (v.ok() && choice) *choice = chose;
  return v;
}

absl::StatusOr<Variant> PlanPrefillBackward(const PrefillBackwardArgs& a) {
  return PlanPrefillBackward(a, TunedLookupFn(), 0);
}

absl::StatusOr<Variant> PlanPrefillBackward(Runtime& rt, const PrefillBackwardArgs& a, Choice* choice) {
  absl::StatusOr<std::optional<Variant>> given = ExplicitBackward(a);
  if (!given.ok()) return given.status();
  Choice chose = Choice::kExplicit;
  absl::StatusOr<Variant> v =
      *given ? **given : rt.TunedOrDefault(BackwardProblemOf(a), BackwardAlgorithmOf(a), BackwardBucketOf(a), &chose);
  if (v.ok() && choice) *choice = chose;
  return v;
}

absl::Status RunPrefillBackward(Runtime& rt, const Variant& v, const PrefillBackwardArgs& a, CUstream stream) {
  if (absl::Status s = CheckPrefillBackward(a); !s.ok()) return s;
  if (v.problem() != BackwardProblemOf(a) || v.algorithm() != BackwardAlgorithmOf(a))
    return Bad("variant", absl::StrCat(v.Key(), " does not match the call"));
  const int64_t tokens = BackwardTokensQ(a);
  if (a.batch == 0 || tokens == 0) return absl::OkStatus();
  const size_t need = PrefillBackwardWorkspaceBytes(a);
  if (a.workspace == nullptr || a.workspace_bytes < need)
    return Bad("workspace", absl::StrCat(a.workspace_bytes, " bytes given, ", need, " needed"));
  if (reinterpret_cast<uintptr_t>(a.workspace) % 16) return Bad("workspace", "must be 16-byte aligned");
  const long long rows = static_cast<long long>(tokens) * a.num_q_heads;
  const long long row_ctas = (rows + kRowWarps - 1) / kRowWarps;
  if (row_ctas > 0x7fffffffLL) return Bad("total_q", "too many query rows for one launch");

  PlxPrefillBwdParams p{};
  p.q = a.q; p.r = a.r; p.k = a.k; p.v = a.v; p.out = a.out; p.dout = a.dout;
  p.vbar = a.vbar.data ? a.vbar : a.out;  // probe none: vbar is out
  p.dq = a.dq; p.dr = a.dr; p.dk = a.dk; p.dv = a.dv;
  p.lse = a.lse;
  p.tbar = a.tbar;
  const bool packed = a.cu_seqlens_q != nullptr;
  const bool contiguous_stats = a.stats_stride_b == 0 && a.stats_stride_h == 0;
  p.stats_stride_b = contiguous_stats ? static_cast<long long>(a.num_q_heads) * a.seqlen_q : a.stats_stride_b;
  p.stats_stride_h = contiguous_stats ? (packed ? tokens : a.seqlen_q) : a.stats_stride_h;
  p.cu_seqlens_q = a.cu_seqlens_q;
  p.cu_seqlens_k = a.cu_seqlens_k;
  float* ws = static_cast<float*>(a.workspace);
  p.dq_accum = ws;
  ws += static_cast<size_t>(rows) * a.head_dim;
  p.dr_accum = a.r.data ? ws : nullptr;
  if (a.r.data) ws += static_cast<size_t>(rows) * a.head_dim;
  p.row_coef = ws;
  p.tokens_q = tokens;
  p.batch = a.batch;
  p.seqlen_q = a.seqlen_q;
  p.seqlen_k = a.seqlen_k;
  p.window = a.window;
  p.scale = a.qk_scale < 0 ? static_cast<float>(1.0 / std::sqrt(static_cast<double>(a.head_dim))) : a.qk_scale;
  p.scale_log2 = p.scale * 1.4426950408889634f;
  p.eps = a.eps;
  p.causal = a.causal ? 1 : 0;

  absl::StatusOr<const LoadedKernel*> k = rt.Load(v);
  if (!k.ok()) return k.status();
  if (absl::Status s = rt.MakeCurrent(); !s.ok()) return s;
  const cu::Api* d = *cu::Driver();
  CUfunction post = nullptr;
  PLX_CU_RETURN_IF_ERROR(d, cuModuleGetFunction(&post, (*k)->module, kPostprocess));
  void* args[] = {&p};
  const int row_threads = (*k)->shape.merge_threads;
  PLX_CU_RETURN_IF_ERROR(d, cuLaunchKernel((*k)->merge, static_cast<unsigned>(row_ctas), 1, 1, row_threads, 1, 1, 0,
                                           stream, args, nullptr));
  if (a.seqlen_k > 0) {
    const Grid grid = FamilyOf(v).MainGrid(v, a.batch, a.seqlen_k, 1);
    PLX_CU_RETURN_IF_ERROR(d, cuLaunchKernel((*k)->main, grid.x, grid.y, grid.z, (*k)->shape.threads, 1, 1,
                                             (*k)->shape.smem_bytes, stream, args, nullptr));
  }
  PLX_CU_RETURN_IF_ERROR(d, cuLaunchKernel(post, static_cast<unsigned>(row_ctas), 1, 1, row_threads, 1, 1, 0, stream,
                                           args, nullptr));
  return absl::OkStatus();
}

absl::Status PrefillBackward(Runtime& rt, const PrefillBackwardArgs& a, CUstream stream) {
  absl::StatusOr<Variant> v = PlanPrefillBackward(rt, a);
  if (!v.ok()) return v.status();
  return RunPrefillBackward(rt, *v, a, stream);
}

}  // namespace parallax
