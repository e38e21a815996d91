// Internals of the C API (parallax/parallax.h): argument translation and status mapping.
// Host-only and device-free, so CPU tests exercise every validation path.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
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

// The one window W the kernels take from `window` and FlashAttention's window_size
// (window_left, window_right), per parallax.h's "Windows": both spellings checked, and
// agreeing when both are given. Messages start with the field they are about.
absl::StatusOr<int32_t> ResolveWindow(int32_t window, int32_t window_left, int32_t window_right);

// absl status -> plx_status (OK -> PLX_OK).
plx_status ToPlxStatus(const absl::Status& s);

}  // namespace parallax::capi
