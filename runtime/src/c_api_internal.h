// Internals of the C API (parallax/parallax.h): argument translation and status mapping.
// Host-only and device-free, so CPU tests exercise every validation path.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "parallax/codegen/generator.h"
#include "parallax/parallax.h"
#include "parallax/runtime/runtime.h"

namespace parallax::capi {

// The two refusals of a translation: malformed or inconsistent (PLX_ERROR_INVALID_ARGUMENT),
// well-formed but without a kernel (PLX_ERROR_UNSUPPORTED).
template <typename... T>
absl::Status Invalid(const T&... parts) {
  return absl::InvalidArgumentError(absl::StrCat(parts...));
}
template <typename... T>
absl::Status Unsupported(const T&... parts) {
  return absl::UnimplementedError(absl::StrCat(parts...));
}

// Validates a plx_decode_args and builds the runtime's checked call from it, kernel
// parameters included (kernel_call.h); the runtime's own checks (CheckDecodeCall) run last,
// so plx_*_validate refuses whatever the launch would. InvalidArgument: malformed or
// inconsistent; Unimplemented: well-formed but unsupported (maps to PLX_ERROR_UNSUPPORTED).
// Every message starts with the argument it is about.
absl::StatusOr<DecodeCall> TranslateDecodeArgs(const plx_decode_args& a);
absl::StatusOr<PrefillCall> TranslatePrefillArgs(const plx_prefill_args& a);

// What every decode entry point runs: TranslateDecodeArgs, then the live-length hint
// (max_seqlen_k, checked against the cache) as the length the plan follows.
absl::StatusOr<DecodeCall> TranslateDecodeCall(const plx_decode_args& a);

// A plan's run (plx_*_plan_run): its arguments must pose the problem the plan was made for,
// as parallax.h's "Plans" lists it; the message names the first field that differs.
absl::Status CheckRunMatchesPlan(const plx_decode_args& plan, const plx_decode_args& run);
absl::Status CheckRunMatchesPlan(const plx_prefill_args& plan, const plx_prefill_args& run);

// Whether a multi-token decode (q [B, Tq, Hq, D], 1 < Tq <= 16) runs on a decode family on a
// device of compute capability sm (decode_sm90 on sm_90: contiguous K/V or pages of >= 8
// keys), with no statistics asked for and no prefill key named; without a key, only where
// DecodeBeatsExtend.
bool MultiTokenRunsAsDecode(const plx_decode_args& a, int sm);
// Without a key named, the routing's rule of thumb from the H200 measurements
// (bench/results/multitoken-decode-h200-2026-12-01.json): whether decode_sm90 is expected to
// run Tq tokens of B sequences faster than extend.
bool DecodeBeatsExtend(int64_t batch, int64_t tq, int64_t hq, int64_t hkv);

// Decode arguments that no decode kernel on a device of compute capability sm (0: none
// known) runs -- more than one query token per sequence (q [B, Tq, Hq, D], Tq > 1) unless
// MultiTokenRunsAsDecode, or statistics -- as the equivalent extend (prefill over the same
// cache, seqused_k = cache_seqlens); nullopt for what decode runs. Refuses what only decode
// takes (num_splits, a decode variant key) and a contiguous cache with per-sequence lengths.
absl::StatusOr<std::optional<plx_prefill_args>> DecodeAsExtend(const plx_decode_args& a, int sm = 0);

// The one window W the kernels take from `window` and FlashAttention's window_size
// (window_left, window_right), per parallax.h's "Windows": both spellings checked, and
// agreeing when both are given. Messages start with the field they are about.
absl::StatusOr<int32_t> ResolveWindow(int32_t window, int32_t window_left, int32_t window_right);

// For messages: "bf16", ...; "[2, 8, 128]".
const char* DTypeName(plx_dtype d);
std::string ShapeString(const int64_t* shape, int ndim);

// A descriptor that passed the generic checks (Describe), with strides filled in.
struct Tensor {
  const char* name = "";
  void* data = nullptr;
  plx_dtype dtype = PLX_DTYPE_UNSET;
  int ndim = 0;
  int64_t shape[PLX_MAX_DIMS] = {};
  int64_t strides[PLX_MAX_DIMS] = {};
  std::string shape_str() const { return ShapeString(shape, ndim); }
};
// The generic checks every tensor of the API gets, messages starting with its name: a
// non-NULL pointer, rank, dtype, sizes, strides (all zero = contiguous) and offsets below
// 2^48 (Describe); no two elements of an output on one address (CheckNoAliasing); a 16-bit
// row tensor's contiguous, 16-byte aligned rows (CheckVectorLayout); a dtype like ref's.
absl::StatusOr<Tensor> Describe(const plx_tensor& t, const char* name);
absl::Status CheckOffsets(const Tensor& t);
absl::Status CheckNoAliasing(const Tensor& t);
absl::Status CheckVectorLayout(const Tensor& t);
absl::Status CheckSameDType(const Tensor& t, const Tensor& ref);
// An output `t` must not share a byte with `other` (their address ranges, from the first to
// the last element they can address); the message names both.
absl::Status CheckDisjoint(const Tensor& t, const Tensor& other);

// plx_merge_states's arguments as the merge kernel's parameters and its kernel
// (c_api_merge_translate.cc); messages start with the argument they are about.
struct MergeCall {
  MergeKernel kernel;
  PlxMergeParams params{};
};
absl::StatusOr<MergeCall> TranslateMergeArgs(const plx_merge_args& a);

// absl status -> plx_status (OK -> PLX_OK).
plx_status ToPlxStatus(const absl::Status& s);

}  // namespace parallax::capi
