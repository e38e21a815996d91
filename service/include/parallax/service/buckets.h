// How the service files and finds tuned configs: exactly as the runtime's TunedStore does,
// with codegen's ShapeBucket (decode "b8-l4096": batch and seqlen rounded up to powers of two,
// seqlen at least 1024; prefill "t4096-l8192": batch x seqlen query tokens, at least 128, and
// context_len, at least 1024) and ProblemKey() ("<problem>.<algorithm>" of a variant key).
// Nearest bucket: NearestBucket() (bucket.h) over the buckets of the same device and problem
// key, the one rule the runtime uses too; NVRTC versions: ParseNvrtcVersion()
// (nvrtc_compiler.h). This header adds only what the service needs on top.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "parallax/codegen/bucket.h"
#include "parallax/codegen/variant.h"
#include "parallax/service/tuning_backend.h"

namespace parallax::service {

// The runtime's built-in default variant for a problem on a device of compute capability sm
// (cc_major * 10 + cc_minor, e.g. 90): DefaultSchedule(p, a, sm) made canonical, what the
// runtime on that GPU runs when nothing names a variant (the first registered family of the
// mode that runs there: on sm_90 prefill the wgmma family's). sm 0 (no device known) is the
// portable family's, which every valid problem has: ValidateProblem uses it to prove a
// problem valid. A device no family of the mode runs on (below sm_80; the service accepts
// any compute capability) gets the portable one too. Errors name the problem field at fault.
absl::StatusOr<Variant> DefaultVariant(const Problem& p, const Algorithm& a, int sm = 0);

// DefaultVariant(spec's problem, sm)'s key, for a validated spec (ValidateProblem):
// GetBestConfig's MATCH_DEFAULT answer to a device of compute capability sm. Where that
// device's default family is the portable one (decode everywhere, prefill off sm_90) it is
// spec.default_variant_key without another Variant::Create; should the device's family have
// no valid default for the problem, also the portable key (the one every valid problem has).
std::string DeviceDefaultKey(const ProblemSpec& spec, int sm);

}  // namespace parallax::service
