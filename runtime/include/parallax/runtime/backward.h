// The backward of a prefill on the GPU (codegen/families/prefill_bwd; docs/backward.md):
// dq, dr, dk, dv from the forward's out and its per-row statistics lse, tbar, vbar.
// Three launches on the caller's stream (preprocess, main, postprocess); nothing allocates or
// synchronizes, so it is graph-safe once the variant is loaded. The float32 workspace is the
// caller's (PrefillBackwardWorkspaceBytes).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include <cuda.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "parallax/codegen/bucket.h"
#include "parallax/codegen/kernel_abi.h"
#include "parallax/codegen/variant.h"
#include "parallax/runtime/runtime.h"  // Choice, TunedLookupFn

namespace parallax {

// Tensors as the kernels take them (kernel_abi.h PlxBwdRows: data, strides batch/token/head
// in elements, the head dim contiguous). Padded: q, r, out, dout, vbar, dq, dr [B, Lq, Hq, D],
// k, v, dk, dv [B, Lk, Hkv, D]; packed with cu_seqlens_q/k: [total, H, D] (stride_b unused).
struct PrefillBackwardArgs {
  DType dtype = DType::kBF16;
  int batch = 0, num_q_heads = 0, num_kv_heads = 0, head_dim = 0;
  PlxBwdRows q{}, r{}, k{}, v{}, out{}, dout{}, vbar{};  // r.data null: probe none (vbar may be null then)
  PlxBwdRows dq{}, dr{}, dk{}, dv{};                     // outputs; dr unused for probe none
  const float* lse = nullptr;   // the forward's statistics (kernel_abi.h PlxPrefillParams layout)
  const float* tbar = nullptr;  // required with a probe
  int64_t stats_stride_b = 0, stats_stride_h = 0;  // both 0: contiguous ([B, Hq, Lq] / [Hq, total_q])
  const int* cu_seqlens_q = nullptr;  // device int32 [B + 1], given together with cu_seqlens_k
  const int* cu_seqlens_k = nullptr;
  int seqlen_q = 0;       // padded: every sequence's; packed: the maximum
  int seqlen_k = 0;       // padded: every sequence's; packed: the maximum (sizes the grid)
  int64_t total_q = 0;    // packed: query tokens (cu_seqlens_q[B]); unused padded
  float qk_scale = -1.f;  // < 0: 1/sqrt(D)
  int window = 0;
  bool causal = true;
  Affine affine = Affine::kPlain;
  float eps = 1e-6f;
  std::string variant_key;  // explicit choice (a "bwd-..." key matching the problem)
  void* workspace = nullptr;  // device, 16-byte aligned, PrefillBackwardWorkspaceBytes
  size_t workspace_bytes = 0;
};

// The problem and algorithm of a call (mode kBackward).
Problem BackwardProblemOf(const PrefillBackwardArgs& a);
Algorithm BackwardAlgorithmOf(const PrefillBackwardArgs& a);
// Query tokens of the call: B * seqlen_q padded, total_q packed.
int64_t BackwardTokensQ(const PrefillBackwardArgs& a);
// Float32 workspace bytes the call needs (the dq/dr accumulators and row coefficients).
size_t PrefillBackwardWorkspaceBytes(const PrefillBackwardArgs& a);

// Host-side checks; InvalidArgument naming the field ("dq: required", "window=5: needs causal").
// Does not check the workspace (RunPrefillBackward does).
absl::Status CheckPrefillBackward(const PrefillBackwardArgs& a);
// The bucket a call's tuned config is filed under: a prefill bucket (query tokens over the
// batch, the context; the maxima when packed), as `parallax tune --mode bwd` files it.
ShapeBucket BackwardBucketOf(const PrefillBackwardArgs& a);
// The variant, strongest first: a.variant_key when given (must match the call: an error if
// not), else the tuned config `lookup` answers for (problem, BackwardBucketOf) (exact bucket,
// else nearest; skipped when it does not parse or fit, ChooseTunedOrDefault), else the family
// default on sm (0: the portable one). *choice (optional) says which.
absl::StatusOr<Variant> PlanPrefillBackward(const PrefillBackwardArgs& a, const TunedLookupFn& lookup, int sm,
                                            Choice* choice = nullptr);
// Without a tuning database: the key, else the portable default.
absl::StatusOr<Variant> PlanPrefillBackward(const PrefillBackwardArgs& a);
// With rt's tuned lookup and device, memoized per (problem, bucket) as prefill's plans are
// (Runtime::TunedOrDefault): what PrefillBackward and the C API's plx_prefill_backward run.
absl::StatusOr<Variant> PlanPrefillBackward(Runtime& rt, const PrefillBackwardArgs& a, Choice* choice = nullptr);
// Launches the three kernels of v on stream.
absl::Status RunPrefillBackward(Runtime& rt, const Variant& v, const PrefillBackwardArgs& a, CUstream stream);
// PlanPrefillBackward(rt, a) then RunPrefillBackward.
absl::Status PrefillBackward(Runtime& rt, const PrefillBackwardArgs& a, CUstream stream);

}  // namespace parallax
