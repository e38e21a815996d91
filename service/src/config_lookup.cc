#include "parallax/service/config_lookup.h"

#include <optional>
#include <vector>

#include "parallax/service/buckets.h"

namespace parallax::service {

absl::StatusOr<v1::GetBestConfigResponse> LookupBestConfig(LookupCache& cache, const LookupQuery& q) {
  v1::GetBestConfigResponse out;
  out.set_requested_bucket(q.spec.bucket);
  out.set_problem_key(q.spec.problem_key);
  out.set_device_fingerprint(q.device_fingerprint);

  // Every bucket of this device and problem: the exact one is among them.
  absl::StatusOr<std::shared_ptr<const CachedConfigs>> rows = cache.Get(q.device_fingerprint, q.spec.problem_key);
  if (!rows.ok()) return rows.status();
  std::vector<ShapeBucket> buckets;  // the servable rows', for NearestBucket (bucket.h)
  std::vector<const CachedConfig*> servable;
  for (const CachedConfig& c : **rows) {
    if (!c.usable || c.row.generator_version != q.versions.generator_version ||
        c.row.nvrtc_version != q.versions.nvrtc_version || c.problem != q.spec.problem ||
        c.algorithm != q.spec.algorithm || !c.family->RunsOn(q.device_sm))
      continue;
    buckets.push_back(c.bucket);
    servable.push_back(&c);
  }
  const ShapeBucket& want = q.spec.shape_bucket;
  if (const std::optional<size_t> nearest = NearestBucket(want, buckets)) {
    const CachedConfig& best = *servable[*nearest];
    out.set_variant_key(best.row.variant_key);
    out.set_median_us(best.row.median_us);
    out.set_bucket(best.row.bucket);
    out.set_match(best.bucket == want ? v1::MATCH_EXACT : v1::MATCH_NEAREST_BUCKET);
    return out;
  }
  // What the runtime on this device runs untuned (on sm_90 prefill the wgmma family's, not
  // the portable spec.default_variant_key).
  out.set_variant_key(DeviceDefaultKey(q.spec, q.device_sm));
  out.set_match(v1::MATCH_DEFAULT);
  return out;
}

}  // namespace parallax::service
