// What the reference's entry points share beyond reference.h: the prefill input checks, so
// PrefillBackward (reference_backward.cc) refuses exactly what Prefill refuses, in its own name.
#pragma once

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "parallax/codegen/reference.h"

namespace parallax::ref::internal {

// InvalidArgument "<fn>: '<field>' has <got> elements, expected <want>" unless got == want.
absl::Status CheckSize(absl::string_view fn, absl::string_view field, size_t got, int64_t want);

// Prefill's checks of the family and the inputs (heads, lengths, sizes, window vs causal).
absl::Status CheckPrefillInputs(absl::string_view fn, const PrefillInputs& in, const Family& f);

}  // namespace parallax::ref::internal
