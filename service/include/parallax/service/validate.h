// Request validation: every proto field a client sends is checked before use and turned
// into the variant IR. Errors are InvalidArgument and start with the field's path, e.g.
// "problems[1].head_dim=96: must be 64, 128 or 256", so clients can point at their bug.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "parallax/cache/store_options.h"
#include "parallax/service/limits.h"
#include "parallax/service/tuning_backend.h"
#include "parallax/v1/tuner.pb.h"

namespace parallax::service {

// A validated GetBestConfig request.
struct LookupQuery {
  ProblemSpec spec;
  std::string device_fingerprint;
  // The device's compute capability, cc_major * 10 + cc_minor (90 for sm_90): its default
  // variant is the MATCH_DEFAULT answer (DeviceDefaultKey, buckets.h).
  int device_sm = 0;
  cache::CurrentVersions versions;
};

// `path` prefixes error messages ("problem", "problems[3]").
absl::StatusOr<ProblemSpec> ValidateProblem(const v1::Problem& p, absl::string_view path);
// The cache fingerprint of a client-described GPU (the runtime's DeviceInfo::fingerprint()).
absl::StatusOr<std::string> ValidateDevice(const v1::DeviceFingerprint& d, absl::string_view path,
                                           const ServiceLimits& limits);
absl::StatusOr<LookupQuery> ValidateLookup(const v1::GetBestConfigRequest& r,
                                           const ServiceLimits& limits);

// Checks the request's own fields (problems, budget, strategy, target); the device count is
// the job manager's business. The returned spec has no job id or device yet.
absl::StatusOr<JobSpec> ValidateSubmit(const v1::SubmitTuningRequest& r, const ServiceLimits& limits);

Strategy FromProto(v1::Strategy s);
v1::Strategy ToProto(Strategy s);

// IR <-> proto enums, for conversions in both directions (job params, clients).
v1::Problem ToProto(const ProblemSpec& spec);

}  // namespace parallax::service
