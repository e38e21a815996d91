// The sm_90a prefill family's launch parameters: the prefill parameters plus TMA maps of q,
// r, k and v (kernel_abi.h, PlxPrefillTmaParams), encoded per call through the driver.
#pragma once

#include "absl/status/statusor.h"
#include "parallax/codegen/kernel_family.h"
#include "parallax/runtime/cuda_driver.h"
#include "parallax/runtime/kernel_call.h"

namespace parallax {

// Whether TMA can read the call's tensors: 16-byte aligned base pointers, strides (of every
// dimension longer than one) multiples of 16 bytes, packed calls with known extents. The
// message says what does not hold.
absl::Status CheckTmaReadable(const PrefillCall& c);

// The maps for variant v (its family's boxes) over c's tensors. Needs cuTensorMapEncodeTiled.
absl::StatusOr<PlxPrefillTmaParams> PrefillTmaParams(const cu::Api* d, const Variant& v, const PrefillCall& c);

}  // namespace parallax
