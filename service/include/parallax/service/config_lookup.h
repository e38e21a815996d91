// GetBestConfig's answer from the cache: exact bucket, else nearest bucket of the same
// device and problem (buckets.h), else the runtime's default variant on the asking device
// (its compute capability picks the family: DeviceDefaultKey, buckets.h). Only entries tuned
// with the query's generator and NVRTC versions whose variant key parses to the asked
// problem and whose family runs on the asking device are served; anything else in the table
// is skipped, never trusted, and the next nearest servable row answers instead.
#pragma once

#include "absl/status/statusor.h"
#include "parallax/service/lookup_cache.h"
#include "parallax/service/validate.h"
#include "parallax/v1/tuner.pb.h"

namespace parallax::service {

// Memory only when `cache` holds the entry, else one indexed query; fine on a reactor thread.
absl::StatusOr<v1::GetBestConfigResponse> LookupBestConfig(LookupCache& cache, const LookupQuery& q);

}  // namespace parallax::service
