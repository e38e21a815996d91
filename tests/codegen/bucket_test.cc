// Shape buckets and the nearest-bucket rule the runtime, the service and the tuner's warm
// start share (parallax/codegen/bucket.h).
#include "parallax/codegen/bucket.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

namespace parallax {
namespace {

ShapeBucket B(const char* s) { return *ParseBucket(s); }

TEST(Buckets, RoundUpAndDistance) {
  EXPECT_EQ(ToString(BucketFor(1, 10)), "b1-l1024");
  EXPECT_EQ(ToString(BucketFor(9, 4097)), "b16-l8192");
  EXPECT_EQ(BucketDistance(BucketFor(8, 4096), BucketFor(32, 2048)), 3.0);
  EXPECT_TRUE(ParseBucket("b8-l4096").ok());
  EXPECT_FALSE(ParseBucket("b8-l4096x").ok());
  EXPECT_FALSE(ParseBucket("8-4096").ok());
}

TEST(NearestBucket, NoneWithoutCandidates) {
  EXPECT_FALSE(NearestBucket(B("b8-l4096"), {}).has_value());
}

TEST(NearestBucket, ExactBucketWins) {
  const std::vector<ShapeBucket> c = {B("b4-l4096"), B("b8-l4096"), B("b16-l4096")};
  EXPECT_EQ(NearestBucket(B("b8-l4096"), c), 1u);
}

TEST(NearestBucket, LeastOctavesOverBothAxes) {
  // From b8-l8192: b4-l4096 is 2 octaves away, b64-l65536 is 6.
  const std::vector<ShapeBucket> c = {B("b64-l65536"), B("b4-l4096")};
  EXPECT_EQ(NearestBucket(B("b8-l8192"), c), 1u);
  EXPECT_EQ(NearestBucket(B("b32-l65536"), c), 0u);
  // One octave on each axis (2) loses to one octave on one axis (1).
  const std::vector<ShapeBucket> d = {B("b16-l8192"), B("b8-l2048")};
  EXPECT_EQ(NearestBucket(B("b8-l4096"), d), 1u);
}

// Equal distances go to the smaller bucket string in byte order, whatever order the
// candidates come in: the order SQLite returns rows in, which the callers used to rely on.
TEST(NearestBucket, TiesGoToTheSmallerBucketString) {
  std::vector<ShapeBucket> c = {B("b4-l4096"), B("b16-l4096"), B("b8-l2048"), B("b8-l8192")};
  // All four are one octave from b8-l4096; "b16-l4096" sorts first ('1' < '4' < '8').
  auto by_string = [](const ShapeBucket& a, const ShapeBucket& b) { return ToString(a) < ToString(b); };
  std::sort(c.begin(), c.end(), by_string);
  int orders = 0;
  do {
    const std::optional<size_t> i = NearestBucket(B("b8-l4096"), c);
    ASSERT_TRUE(i.has_value());
    EXPECT_EQ(ToString(c[*i]), "b16-l4096");
    ++orders;
  } while (std::next_permutation(c.begin(), c.end(), by_string));
  EXPECT_EQ(orders, 24);
}

TEST(NearestBucket, TieAmongSeqlensGoesToTheSmallerString) {
  // "b8-l2048" < "b8-l8192" in byte order, though neither is nearer.
  const std::vector<ShapeBucket> c = {B("b8-l8192"), B("b8-l2048")};
  EXPECT_EQ(NearestBucket(B("b8-l4096"), c), 1u);
}

}  // namespace
}  // namespace parallax
