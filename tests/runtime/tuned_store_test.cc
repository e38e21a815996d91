// The runtime's tuned-config lookup (exact bucket, nearest bucket, stale versions) and the
// persistent binary cache, on a real SQLite file. CPU only.
#include "tuned_store.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "parallax/cache/store.h"
#include "parallax/runtime/nvrtc_compiler.h"

namespace parallax {
namespace {

class TunedStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("plx_tuned_" + std::to_string(::getpid()) + "_" +
                                                     ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    path_ = (dir_ / "tuner.db").string();
    dev_.name = "Test GPU";
    dev_.cc_major = 9;
    dev_.sm_count = 132;
    dev_.nvrtc_version = "13.0";
    dev_.driver_version = 13000;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  void Put(const std::string& bucket, const std::string& key, int gen = kGeneratorVersion) {
    PutFor(problem_, bucket, key, gen, NvrtcVersionNumber(dev_.nvrtc_version));
  }
  void PutFor(const Problem& problem, const std::string& bucket, const std::string& key, int gen, int nvrtc) {
    auto s = cache::Store::Open(path_);
    ASSERT_TRUE(s.ok()) << s.status();
    cache::DeviceInfo d;  // best configs reference a known device and problem
    d.fingerprint = dev_.fingerprint();
    d.name = dev_.name;
    ASSERT_TRUE((*s)->UpsertDevice(d).ok());
    ASSERT_TRUE((*s)->UpsertProblem(ProblemKey(problem, alg_), nlohmann::json::object()).ok());
    cache::BestConfig c;
    c.device_fingerprint = dev_.fingerprint();
    c.problem_key = ProblemKey(problem, alg_);
    c.bucket = bucket;
    c.variant_key = key;
    c.median_us = 10;
    c.generator_version = gen;
    c.nvrtc_version = nvrtc;
    absl::Status st = (*s)->SetBestConfig(c);
    ASSERT_TRUE(st.ok()) << st;
  }

  std::filesystem::path dir_;
  std::string path_;
  DeviceInfo dev_;
  Problem problem_{Mode::kDecode, DType::kBF16, 128, 32, 8, KvLayout::kContiguous, 0, false};
  Problem prefill_{Mode::kPrefill, DType::kBF16, 128, 32, 8, KvLayout::kContiguous, 0, false};
  Algorithm alg_{Probe::kLearned, Affine::kPlain};
};

TEST_F(TunedStoreTest, ExactThenNearestBucket) {
  Put("b8-l4096", "decode-bf16-d128-h32x8-contig-nowin.learned-plain.mma-n64-w4-s3-split4-g4");
  Put("b64-l65536", "decode-bf16-d128-h32x8-contig-nowin.learned-plain.mma-n128-w4-s2-splitauto-g4");
  auto db = TunedStore::Open(path_, dev_);
  ASSERT_TRUE(db.ok()) << db.status();
  auto exact = (*db)->Lookup(problem_, alg_, BucketFor(7, 3000));  // rounds up to b8-l4096
  ASSERT_TRUE(exact.ok()) << exact.status();
  EXPECT_EQ(exact->second, Choice::kTunedExact);
  EXPECT_NE(exact->first.find("split4"), std::string::npos);
  auto near = (*db)->Lookup(problem_, alg_, BucketFor(128, 65536));  // one octave from b64-l65536
  ASSERT_TRUE(near.ok()) << near.status();
  EXPECT_EQ(near->second, Choice::kTunedNearest);
  EXPECT_NE(near->first.find("n128"), std::string::npos);
}

// Equally near buckets: the smaller bucket string wins (NearestBucket, bucket.h), as in the
// service's GetBestConfig.
TEST_F(TunedStoreTest, NearestBucketTiesGoToTheSmallerBucketString) {
  const std::string b4 = "decode-bf16-d128-h32x8-contig-nowin.learned-plain.mma-n64-w4-s3-split4-g4";
  const std::string b16 = "decode-bf16-d128-h32x8-contig-nowin.learned-plain.mma-n128-w4-s2-splitauto-g4";
  Put("b4-l4096", b4);
  Put("b16-l4096", b16);
  auto db = TunedStore::Open(path_, dev_);
  ASSERT_TRUE(db.ok()) << db.status();
  auto near = (*db)->Lookup(problem_, alg_, BucketFor(8, 4096));  // one octave from either
  ASSERT_TRUE(near.ok()) << near.status();
  EXPECT_EQ(near->first, b16);
  EXPECT_EQ(near->second, Choice::kTunedNearest);
}

TEST_F(TunedStoreTest, StaleGeneratorVersionIsNotServed) {
  Put("b8-l4096", "decode-bf16-d128-h32x8-contig-nowin.learned-plain.mma-n64-w4-s3-split4-g4",
      kGeneratorVersion - 1);
  auto db = TunedStore::Open(path_, dev_);
  ASSERT_TRUE(db.ok());
  EXPECT_EQ((*db)->Lookup(problem_, alg_, BucketFor(8, 4096)).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(TunedStoreTest, OtherDeviceOrProblemIsNotServed) {
  Put("b8-l4096", "decode-bf16-d128-h32x8-contig-nowin.learned-plain.mma-n64-w4-s3-split4-g4");
  DeviceInfo other = dev_;
  other.sm_count = 114;
  auto db = TunedStore::Open(path_, other);
  ASSERT_TRUE(db.ok());
  EXPECT_FALSE((*db)->Lookup(problem_, alg_, BucketFor(8, 4096)).ok());
  auto same = TunedStore::Open(path_, dev_);
  Algorithm softmax{Probe::kNone, Affine::kPlain};
  EXPECT_FALSE((*same)->Lookup(problem_, softmax, BucketFor(8, 4096)).ok());
}

// A test-only key (its kernel faults or hangs) in the DB, e.g. from an import, is never
// served as a tuned config: neither for its exact bucket nor as the nearest one.
TEST_F(TunedStoreTest, TestOnlyKeysAreNeverServed) {
  const std::string base = "decode-bf16-d128-h32x8-contig-nowin.learned-plain.mma-n64-w4-s3-split4-g4";
  Put("b8-l4096", base + "-testfault");
  Put("b64-l65536", base + "-testhang");
  auto db = TunedStore::Open(path_, dev_);
  ASSERT_TRUE(db.ok()) << db.status();
  EXPECT_EQ((*db)->Lookup(problem_, alg_, BucketFor(8, 4096)).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ((*db)->Lookup(problem_, alg_, BucketFor(64, 65536)).status().code(), absl::StatusCode::kNotFound);
  Put("b16-l4096", base);  // a real config elsewhere is the nearest answer instead
  auto exact = (*db)->Lookup(problem_, alg_, BucketFor(8, 4096));
  ASSERT_TRUE(exact.ok()) << exact.status();
  EXPECT_EQ(exact->first, base);
  EXPECT_EQ(exact->second, Choice::kTunedNearest);
}

// Prefill configs are filed under the prefill problem key and a prefill bucket (query tokens
// over the batch, context length: PrefillBucketFor) and served by the same rule as decode.
constexpr char kPrefillA[] = "prefill-bf16-d128-h32x8-contig-nowin.learned-plain.mma-m64-n64-w4-s2";
constexpr char kPrefillB[] = "prefill-bf16-d128-h32x8-contig-nowin.learned-plain.mma-m64-n128-w8-s2";

TEST_F(TunedStoreTest, PrefillExactThenNearestBucket) {
  const int nvrtc = NvrtcVersionNumber(dev_.nvrtc_version);
  PutFor(prefill_, "t4096-l4096", kPrefillA, kGeneratorVersion, nvrtc);
  PutFor(prefill_, "t65536-l16384", kPrefillB, kGeneratorVersion, nvrtc);
  auto db = TunedStore::Open(path_, dev_);
  ASSERT_TRUE(db.ok()) << db.status();
  auto exact = (*db)->Lookup(prefill_, alg_, PrefillBucketFor(1, 3000, 3000));  // t4096-l4096
  ASSERT_TRUE(exact.ok()) << exact.status();
  EXPECT_EQ(exact->first, kPrefillA);
  EXPECT_EQ(exact->second, Choice::kTunedExact);
  auto near = (*db)->Lookup(prefill_, alg_, PrefillBucketFor(8, 16384, 16384));  // one octave from t65536-l16384
  ASSERT_TRUE(near.ok()) << near.status();
  EXPECT_EQ(near->first, kPrefillB);
  EXPECT_EQ(near->second, Choice::kTunedNearest);
  // The decode problem of the same shape has nothing tuned: the mode is in the problem key.
  EXPECT_EQ((*db)->Lookup(problem_, alg_, BucketFor(1, 4096)).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(TunedStoreTest, PrefillStaleVersionsAreNotServed) {
  const int nvrtc = NvrtcVersionNumber(dev_.nvrtc_version);
  PutFor(prefill_, "t4096-l4096", kPrefillA, kGeneratorVersion - 1, nvrtc);
  PutFor(prefill_, "t8192-l4096", kPrefillB, kGeneratorVersion, nvrtc - 10);
  auto db = TunedStore::Open(path_, dev_);
  ASSERT_TRUE(db.ok());
  EXPECT_EQ((*db)->Lookup(prefill_, alg_, PrefillBucketFor(1, 4096, 4096)).status().code(),
            absl::StatusCode::kNotFound);
  PutFor(prefill_, "t1024-l1024", kPrefillB, kGeneratorVersion, nvrtc);  // current: the nearest answer
  auto near = (*db)->Lookup(prefill_, alg_, PrefillBucketFor(1, 4096, 4096));
  ASSERT_TRUE(near.ok()) << near.status();
  EXPECT_EQ(near->first, kPrefillB);
  EXPECT_EQ(near->second, Choice::kTunedNearest);
}

// Rows a prefill lookup cannot use are skipped, not served and not an error: an unparsable
// bucket, a decode-kind bucket under the prefill problem, a test-only key.
TEST_F(TunedStoreTest, PrefillBadRowsAreIgnored) {
  const int nvrtc = NvrtcVersionNumber(dev_.nvrtc_version);
  PutFor(prefill_, "t4096", kPrefillA, kGeneratorVersion, nvrtc);
  PutFor(prefill_, "b1-l4096", kPrefillA, kGeneratorVersion, nvrtc);
  PutFor(prefill_, "t2048-l4096", std::string(kPrefillA) + "-testfault", kGeneratorVersion, nvrtc);
  auto db = TunedStore::Open(path_, dev_);
  ASSERT_TRUE(db.ok());
  EXPECT_EQ((*db)->Lookup(prefill_, alg_, PrefillBucketFor(1, 4096, 4096)).status().code(),
            absl::StatusCode::kNotFound);
  PutFor(prefill_, "t16384-l4096", kPrefillB, kGeneratorVersion, nvrtc);
  auto near = (*db)->Lookup(prefill_, alg_, PrefillBucketFor(1, 4096, 4096));
  ASSERT_TRUE(near.ok()) << near.status();
  EXPECT_EQ(near->first, kPrefillB);
}

TEST_F(TunedStoreTest, BinariesRoundTrip) {
  auto db = TunedStore::Open(path_, dev_);
  ASSERT_TRUE(db.ok());
  EXPECT_FALSE((*db)->GetBinary("abc").has_value());
  const std::string cubin("\x7f" "ELF\0\1\2", 7);
  (*db)->PutBinary("abc", "srchash", cubin, "ptxas info");
  auto again = TunedStore::Open(path_, dev_);
  auto got = (*again)->GetBinary("abc");
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(*got, cubin);
}

}  // namespace
}  // namespace parallax
