#include "parallax/codegen/bucket.h"

#include <cmath>
#include <cstdio>

#include "absl/strings/str_cat.h"

namespace parallax {
namespace {
int NextPow2(int x) {
  int p = 1;
  while (p < x && p < (1 << 30)) p <<= 1;
  return p;
}
}  // namespace

ShapeBucket BucketFor(int batch, int seqlen) {
  return ShapeBucket{NextPow2(std::max(batch, 1)), std::max(1024, NextPow2(std::max(seqlen, 1)))};
}

std::string ToString(const ShapeBucket& b) { return absl::StrCat("b", b.batch, "-l", b.seqlen); }

absl::StatusOr<ShapeBucket> ParseBucket(const std::string& s) {
  ShapeBucket b;
  char tail = 0;
  if (std::sscanf(s.c_str(), "b%d-l%d%c", &b.batch, &b.seqlen, &tail) != 2 || b.batch < 1 ||
      b.seqlen < 1 || ToString(b) != s)
    return absl::InvalidArgumentError(absl::StrCat("bucket '", s, "': expected bN-lM, e.g. b8-l4096"));
  return b;
}

double BucketDistance(const ShapeBucket& a, const ShapeBucket& b) {
  return std::fabs(std::log2(double(a.batch) / b.batch)) + std::fabs(std::log2(double(a.seqlen) / b.seqlen));
}

std::optional<size_t> NearestBucket(const ShapeBucket& want, std::span<const ShapeBucket> candidates) {
  std::optional<size_t> best;
  double best_distance = 0;
  for (size_t i = 0; i < candidates.size(); ++i) {
    const double d = BucketDistance(want, candidates[i]);
    if (!best || d < best_distance ||
        (d == best_distance && ToString(candidates[i]) < ToString(candidates[*best]))) {
      best = i;
      best_distance = d;
    }
  }
  return best;
}

}  // namespace parallax
