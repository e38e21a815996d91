// Internals of the C API (parallax/parallax.h): argument translation and status mapping.
// Host-only and device-free, so CPU tests exercise every validation path.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "parallax/parallax.h"
#include "parallax/runtime/runtime.h"

namespace parallax::capi {

// Validates a plx_decode_args and builds the runtime's checked call from it, kernel
// parameters included (kernel_call.h); the runtime's own checks (CheckDecodeCall) run last,
// so plx_*_validate refuses whatever the launch would. InvalidArgument: malformed or
// inconsistent; Unimplemented: well-formed but unsupported (maps to PLX_ERROR_UNSUPPORTED).
// Every message starts with the argument it is about.
absl::StatusOr<DecodeCall> TranslateDecodeArgs(const plx_decode_args& a);
absl::StatusOr<PrefillCall> TranslatePrefillArgs(const plx_prefill_args& a);

// absl status -> plx_status (OK -> PLX_OK).
plx_status ToPlxStatus(const absl::Status& s);

}  // namespace parallax::capi
