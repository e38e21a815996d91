// The sm_90a families' launch parameters, encoded per call through the driver: prefill's
// (the prefill parameters plus TMA maps of q, r, k and v; kernel_abi.h, PlxPrefillTmaParams)
// and decode's (the decode parameters plus maps of k and v; PlxDecodeTmaParams).
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

// Whether TMA can read a decode call's K/V: 16-byte aligned k and v, strides (of every
// dimension longer than one) multiples of 16 bytes; contiguous with per-sequence lengths, a
// bound `seqlen` >= 1 (the maps' token extent); paged, the pool's page count num_pages (the
// maps' page extent). The message says what does not hold.
absl::Status CheckDecodeTmaReadable(const PlxDecodeParams& p, const Problem& problem, int64_t num_pages);

// The maps for decode variant v (its family's boxes) over p's k and v; p is copied in as it
// is, so fill in the launch's split fields first.
absl::StatusOr<PlxDecodeTmaParams> DecodeTmaParams(const cu::Api* d, const Variant& v, const PlxDecodeParams& p,
                                                   int64_t num_pages);

}  // namespace parallax
