// How the service files and finds tuned configs: exactly as the runtime's TunedStore does,
// with codegen's ShapeBucket (decode "b8-l4096": batch and seqlen rounded up to powers of two,
// seqlen at least 1024; prefill "t4096-l8192": batch x seqlen query tokens, at least 128, and
// context_len, at least 1024) and ProblemKey() ("<problem>.<algorithm>" of a variant key).
// Nearest bucket: NearestBucket() (bucket.h) over the buckets of the same device and problem
// key, the one rule the runtime uses too; NVRTC versions: ParseNvrtcVersion()
// (nvrtc_compiler.h). This header adds only what the service needs on top.
#pragma once

#include "absl/status/statusor.h"
#include "parallax/codegen/bucket.h"
#include "parallax/codegen/variant.h"

namespace parallax::service {

// The runtime's built-in default variant for a problem (DefaultDecodeSchedule /
// DefaultPrefillSchedule made canonical); errors name the problem field at fault.
absl::StatusOr<Variant> DefaultVariant(const Problem& p, const Algorithm& a);

}  // namespace parallax::service
