// Shape buckets and problem keys: how tuned results are filed and found again.
//
// A tuned config is stored per (device fingerprint, problem key, bucket). The problem key
// is the problem + algorithm part of a variant key ("decode-bf16-d128-h32x8-contig-nowin.
// learned-plain"); the bucket rounds the run-time sizes up to powers of two ("b8-l4096")
// so that one tuning run serves every nearby shape.
#pragma once

#include <cstddef>
#include <optional>
#include <span>
#include <string>

#include "absl/status/statusor.h"
#include "parallax/codegen/variant.h"

namespace parallax {

struct ShapeBucket {
  int batch = 1;     // next power of two >= batch
  int seqlen = 1024; // next power of two >= seqlen, at least 1024
  bool operator==(const ShapeBucket&) const = default;
};

ShapeBucket BucketFor(int batch, int seqlen);
std::string ToString(const ShapeBucket& b);               // "b8-l4096"
absl::StatusOr<ShapeBucket> ParseBucket(const std::string& s);
// Distance in octaves, summed over both axes (0 = same bucket).
double BucketDistance(const ShapeBucket& a, const ShapeBucket& b);

// The one rule for serving a shape from configs tuned for other buckets, used by the
// runtime's TunedStore, the service's GetBestConfig and the tuner's warm start: the
// candidate with the least BucketDistance to `want`, ties to the smaller bucket string
// (ToString in byte order, as SQLite sorts the column: "b16-l1024" before "b8-l1024"), so
// the answer does not depend on the order candidates come in. An exact bucket (distance 0)
// wins. Returns the index into candidates; nullopt when there are none.
std::optional<size_t> NearestBucket(const ShapeBucket& want, std::span<const ShapeBucket> candidates);

}  // namespace parallax
