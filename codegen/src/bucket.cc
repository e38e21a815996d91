#include "parallax/codegen/bucket.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <tuple>

#include "absl/strings/str_cat.h"

namespace parallax {
namespace {
constexpr int kMinContext = 1024;
constexpr int kMinPrefillTokens = 128;

int NextPow2(int64_t x) {
  int p = 1;
  while (p < x && p < (1 << 30)) p <<= 1;
  return p;
}

double Octaves(int a, int b) { return std::fabs(std::log2(double(a) / b)); }
}  // namespace

ShapeBucket BucketFor(int batch, int seqlen) {
  return ShapeBucket{NextPow2(std::max(batch, 1)), std::max(kMinContext, NextPow2(std::max(seqlen, 1)))};
}

ShapeBucket PrefillBucketFor(int batch, int q_len, int context) {
  // int64: B x Lq may pass 2^31 for a large batch of long prompts.
  const int64_t tokens = int64_t{std::max(batch, 1)} * std::max(q_len, 1);
  return ShapeBucket{0, std::max(kMinContext, NextPow2(std::max(context, 1))),
                     std::max(kMinPrefillTokens, NextPow2(tokens))};
}

std::string ToString(const ShapeBucket& b) {
  if (IsPrefillBucket(b)) return absl::StrCat("t", b.tokens, "-l", b.seqlen);
  return absl::StrCat("b", b.batch, "-l", b.seqlen);
}

absl::StatusOr<ShapeBucket> ParseBucket(const std::string& s) {
  ShapeBucket b;
  char tail = 0;
  const bool prefill = !s.empty() && s[0] == 't';
  const int n = prefill ? std::sscanf(s.c_str(), "t%d-l%d%c", &b.tokens, &b.seqlen, &tail)
                        : std::sscanf(s.c_str(), "b%d-l%d%c", &b.batch, &b.seqlen, &tail);
  if (prefill) b.batch = 0;
  const bool sizes_ok = prefill ? b.tokens >= 1 : b.batch >= 1;
  if (n != 2 || !sizes_ok || b.seqlen < 1 || ToString(b) != s)
    return absl::InvalidArgumentError(
        absl::StrCat("bucket '", s, "': expected bN-lM (decode, e.g. b8-l4096) or tN-lM (prefill, e.g. t4096-l8192)"));
  return b;
}

double BucketDistance(const ShapeBucket& a, const ShapeBucket& b) {
  if (IsPrefillBucket(a) != IsPrefillBucket(b)) return std::numeric_limits<double>::infinity();
  if (IsPrefillBucket(a)) return Octaves(a.tokens, b.tokens) + Octaves(a.seqlen, b.seqlen);
  return Octaves(a.batch, b.batch) + Octaves(a.seqlen, b.seqlen);
}

BucketShape ShapeOf(const ShapeBucket& b) {
  if (!IsPrefillBucket(b)) return BucketShape{b.batch, b.seqlen, 1};
  const int q_len = std::min(b.tokens, b.seqlen);
  return BucketShape{std::max(1, b.tokens / q_len), b.seqlen, q_len};
}

std::optional<size_t> NearestBucket(const ShapeBucket& want, std::span<const ShapeBucket> candidates) {
  std::optional<size_t> best;
  double best_distance = 0;
  for (size_t i = 0; i < candidates.size(); ++i) {
    const double d = BucketDistance(want, candidates[i]);
    if (std::isinf(d)) continue;  // the other mode's bucket
    if (!best || d < best_distance ||
        (d == best_distance && ToString(candidates[i]) < ToString(candidates[*best]))) {
      best = i;
      best_distance = d;
    }
  }
  return best;
}

bool BucketLess(const std::string& a, const std::string& b) {
  const absl::StatusOr<ShapeBucket> x = ParseBucket(a), y = ParseBucket(b);
  if (x.ok() != y.ok()) return x.ok();
  if (!x.ok()) return a < b;
  auto rank = [](const ShapeBucket& s) {
    return std::make_tuple(IsPrefillBucket(s), IsPrefillBucket(s) ? s.tokens : s.batch, s.seqlen);
  };
  return rank(*x) < rank(*y);
}

}  // namespace parallax
