// Shape buckets and the nearest-bucket rule the runtime, the service and the tuner's warm
// start share (parallax/codegen/bucket.h).
#include "parallax/codegen/bucket.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
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

// Prefill buckets: query tokens over the batch (B x Lq, >= 128) and context length (>= 1024).
TEST(PrefillBuckets, RoundUpOnTokensAndContext) {
  EXPECT_EQ(ToString(PrefillBucketFor(1, 4096, 4096)), "t4096-l4096");  // full causal prefill
  EXPECT_EQ(ToString(PrefillBucketFor(4, 3000, 3000)), "t16384-l4096");
  EXPECT_EQ(ToString(PrefillBucketFor(1, 1, 10)), "t128-l1024");         // floors
  EXPECT_EQ(ToString(PrefillBucketFor(1, 512, 8192)), "t512-l8192");     // a chunk at the end
  // 64 queries x batch 8 launch like 512 x batch 1: the same bucket.
  EXPECT_EQ(PrefillBucketFor(8, 64, 8192), PrefillBucketFor(1, 512, 8192));
  // B x Lq past 2^31 does not overflow.
  EXPECT_EQ(ToString(PrefillBucketFor(65536, 65536, 65536)), "t1073741824-l65536");
}

TEST(PrefillBuckets, StringsRoundTripAndNeverReadAsDecode) {
  for (const ShapeBucket& b : {PrefillBucketFor(1, 4096, 4096), PrefillBucketFor(2, 100, 70000), BucketFor(8, 4096)}) {
    absl::StatusOr<ShapeBucket> back = ParseBucket(ToString(b));
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(*back, b);
  }
  EXPECT_TRUE(IsPrefillBucket(B("t512-l8192")));
  EXPECT_FALSE(IsPrefillBucket(B("b8-l4096")));
  EXPECT_EQ(B("t512-l8192").batch, 0);
  for (const char* bad : {"t0-l4096", "t512-l", "t512-l8192x", "t512l8192", "b512-t8192", "T512-l8192", ""})
    EXPECT_FALSE(ParseBucket(bad).ok()) << bad;
  EXPECT_NE(ParseBucket("t0-l4096").status().message().find("tN-lM"), absl::string_view::npos);
}

TEST(PrefillBuckets, DistanceAndNearest) {
  EXPECT_EQ(BucketDistance(B("t4096-l4096"), B("t16384-l2048")), 3.0);
  EXPECT_TRUE(std::isinf(BucketDistance(B("t4096-l4096"), B("b8-l4096"))));
  // The other kind is never a candidate, even when it is the only one.
  EXPECT_FALSE(NearestBucket(B("t4096-l4096"), std::vector<ShapeBucket>{B("b8-l4096")}).has_value());
  const std::vector<ShapeBucket> c = {B("b4096-l4096"), B("t65536-l65536"), B("t2048-l4096"), B("t8192-l8192")};
  EXPECT_EQ(NearestBucket(B("t4096-l4096"), c), 2u);  // 1 octave; t8192-l8192 is 2
  // Ties go to the smaller string, as for decode: t16384-l4096 < t4096-l8192.
  const std::vector<ShapeBucket> d = {B("t4096-l8192"), B("t16384-l4096")};
  EXPECT_EQ(NearestBucket(B("t8192-l4096"), d), 1u);
  EXPECT_EQ(NearestBucket(B("t4096-l4096"), d), 0u);
}

TEST(PrefillBuckets, ShapeLandsInItsBucket) {
  for (const char* s : {"t128-l1024", "t4096-l4096", "t16384-l4096", "t512-l8192", "t1048576-l131072"}) {
    const ShapeBucket b = B(s);
    const BucketShape sh = ShapeOf(b);
    EXPECT_LE(sh.q_len, sh.seqlen) << s;
    EXPECT_EQ(ToString(PrefillBucketFor(sh.batch, sh.q_len, sh.seqlen)), s);
  }
  EXPECT_EQ(ShapeOf(B("t16384-l4096")).batch, 4);
  EXPECT_EQ(ShapeOf(B("t512-l8192")).q_len, 512);
  const BucketShape d = ShapeOf(B("b8-l4096"));
  EXPECT_EQ(d.batch, 8);
  EXPECT_EQ(d.seqlen, 4096);
  EXPECT_EQ(d.q_len, 1);
}

// Listings sort buckets by their numbers, not their text (b1-l16384 after b1-l4096).
TEST(BucketOrder, NumericNotText) {
  std::vector<std::string> v = {"b1-l16384", "t4096-l4096", "b8-l1024", "b1-l4096", "junk", "b1-l1024",
                                "t512-l8192", "b128-l65536", "t4096-l1024", "b16-l1024"};
  std::sort(v.begin(), v.end(), BucketLess);
  const std::vector<std::string> want = {"b1-l1024", "b1-l4096", "b1-l16384", "b8-l1024", "b16-l1024",
                                         "b128-l65536", "t512-l8192", "t4096-l1024", "t4096-l4096", "junk"};
  EXPECT_EQ(v, want);
  EXPECT_FALSE(BucketLess("b1-l1024", "b1-l1024"));
  EXPECT_TRUE(BucketLess("b1-l1024", "zzz"));
  EXPECT_FALSE(BucketLess("zzz", "b1-l1024"));
}

}  // namespace
}  // namespace parallax
