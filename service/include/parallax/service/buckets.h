// How the service files and finds tuned configs: exactly as the runtime's TunedStore does,
// with codegen's ShapeBucket ("b8-l4096": batch and seqlen rounded up to powers of two,
// seqlen at least 1024) and ProblemKey() ("<problem>.<algorithm>" of a variant key).
// Nearest bucket: the least BucketDistance (octaves over both axes) among the buckets of the
// same device and problem key, ties to the smaller bucket string, as the runtime breaks them.
// This header adds only what the service needs on top.
#pragma once

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "parallax/codegen/bucket.h"
#include "parallax/codegen/variant.h"

namespace parallax::service {

// The runtime's built-in default variant for a problem (DefaultDecodeSchedule /
// DefaultPrefillSchedule made canonical); errors name the problem field at fault.
absl::StatusOr<Variant> DefaultVariant(const Problem& p, const Algorithm& a);

// NVRTC "major.minor" as the cache stores it: major * 1000 + minor * 10 ("13.0" -> 13000),
// like the runtime's, but strict: anything else is InvalidArgument naming nvrtc_version.
absl::StatusOr<int> NvrtcVersionNumber(absl::string_view text);

}  // namespace parallax::service
