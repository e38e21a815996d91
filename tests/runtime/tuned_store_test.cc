// The runtime's tuned-config lookup (exact bucket, nearest bucket, stale versions, a driver
// update, old and missing databases), read-only on a real SQLite file. CPU only.
#include "tuned_store.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <thread>

#include "absl/strings/str_cat.h"
#include "parallax/cache/db.h"
#include "parallax/cache/store.h"
#include "parallax/codegen/kernel_family.h"
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

  // The decode plan's choice on an sm GPU (ChooseTunedOrDefault over the lookup Runtime::Create
  // installs for a db_path): the key and whether it is exact, nearest or the default.
  std::pair<std::string, Choice> Choose(const ShapeBucket& bucket, int sm) {
    auto db = TunedStore::Open(path_, dev_);
    EXPECT_TRUE(db.ok()) << db.status();
    if (!db.ok()) return {std::string(db.status().message()), Choice::kExplicit};
    std::shared_ptr<TunedStore> store = std::move(*db);
    const TunedLookupFn lookup = [store](const Problem& p, const Algorithm& a, const ShapeBucket& b,
                                         const TunedKeyFilter& usable) { return store->Lookup(p, a, b, usable); };
    Choice c = Choice::kExplicit;
    absl::StatusOr<Variant> v = ChooseTunedOrDefault(lookup, problem_, alg_, bucket, sm, &c);
    EXPECT_TRUE(v.ok()) << v.status();
    return {v.ok() ? v->Key() : std::string(v.status().message()), c};
  }
  std::string DefaultKey(int sm) const {
    return Variant::Create(problem_, alg_, DefaultSchedule(problem_, alg_, sm))->Key();
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

// What the DB holds is untrusted: a row of the call's own bucket that does not parse, is for
// another problem or is of a family this GPU cannot run is passed over for the nearest
// usable row of another bucket, not for the default.
constexpr char kDecodeGood[] = "decode-bf16-d128-h32x8-contig-nowin.learned-plain.mma-n128-w4-s2-splitauto-g4";
constexpr char kDecodeWgmma[] = "decode-bf16-d128-h32x8-contig-nowin.learned-plain.wgmma-n64-w4-s2-split4-g4";

TEST_F(TunedStoreTest, ABadExactRowDoesNotHideAGoodNearestOne) {
  ASSERT_TRUE(Variant::Parse(kDecodeGood).ok());
  absl::StatusOr<Variant> wgmma = Variant::Parse(kDecodeWgmma);
  ASSERT_TRUE(wgmma.ok()) << wgmma.status();
  ASSERT_FALSE(FamilyOf(*wgmma).RunsOn(80));
  ASSERT_TRUE(FamilyOf(*wgmma).RunsOn(90));
  for (const std::string& bad : {std::string(kDecodeGood) + "-nonsense",
                                 std::string("decode-bf16-d128-h32x8-contig-nowin.learned-plain.mma-n64"),
                                 std::string("decode-fp16-d128-h32x8-contig-nowin.learned-plain.mma-n64-w4-s2-split4-g4"),
                                 std::string("prefill-bf16-d128-h32x8-contig-nowin.learned-plain.mma-m64-n64-w4-s2"),
                                 std::string(kDecodeWgmma)}) {
    std::filesystem::remove(path_);
    Put("b8-l4096", bad);
    Put("b16-l4096", kDecodeGood);
    EXPECT_EQ(Choose(BucketFor(8, 4096), 80), std::make_pair(std::string(kDecodeGood), Choice::kTunedNearest))
        << "row '" << bad << "'";
  }
  // The wgmma row runs on sm_90: there it is the exact answer.
  EXPECT_EQ(Choose(BucketFor(8, 4096), 90), std::make_pair(std::string(kDecodeWgmma), Choice::kTunedExact));
  // A good exact row still wins over a good nearest one.
  EXPECT_EQ(Choose(BucketFor(16, 4096), 80), std::make_pair(std::string(kDecodeGood), Choice::kTunedExact));
}

TEST_F(TunedStoreTest, OnlyBadRowsAreTheDefault) {
  Put("b8-l4096", std::string(kDecodeGood) + "-nonsense");
  Put("b16-l4096", "decode-fp16-d128-h32x8-contig-nowin.learned-plain.mma-n64-w4-s2-split4-g4");
  Put("b4-l4096", "prefill-bf16-d128-h32x8-contig-nowin.learned-plain.mma-m64-n64-w4-s2");
  Put("b8-l8192", kDecodeWgmma);
  Put("b8-l2048", std::string(kDecodeGood) + "-testfault");
  EXPECT_EQ(Choose(BucketFor(8, 4096), 80), std::make_pair(DefaultKey(80), Choice::kDefault));
  // Nothing at all to take: the default too.
  std::filesystem::remove(path_);
  EXPECT_EQ(Choose(BucketFor(8, 4096), 80), std::make_pair(DefaultKey(80), Choice::kDefault));
}

// A lookup that ignores the filter (a caller's own) still gets a bad key refused: the default.
TEST_F(TunedStoreTest, AKeyTheFilterWouldRefuseIsNeverChosen) {
  const TunedLookupFn careless = [](const Problem&, const Algorithm&, const ShapeBucket&, const TunedKeyFilter&) {
    return absl::StatusOr<std::pair<std::string, Choice>>(std::make_pair(std::string(kDecodeWgmma), Choice::kTunedExact));
  };
  Choice c = Choice::kExplicit;
  absl::StatusOr<Variant> v = ChooseTunedOrDefault(careless, problem_, alg_, BucketFor(8, 4096), 80, &c);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->Key(), DefaultKey(80));
  EXPECT_EQ(c, Choice::kDefault);
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

// A driver patch release (13000 -> 13010) keeps every tuned answer: the device identity has
// no driver version in it (cache/device_key.h).
TEST_F(TunedStoreTest, DriverBumpKeepsExactAnswers) {
  const std::string key = "decode-bf16-d128-h32x8-contig-nowin.learned-plain.mma-n64-w4-s3-split4-g4";
  Put("b8-l4096", key);  // tuned under driver 13000
  DeviceInfo bumped = dev_;
  bumped.driver_version = 13010;
  auto db = TunedStore::Open(path_, bumped);
  ASSERT_TRUE(db.ok()) << db.status();
  auto exact = (*db)->Lookup(problem_, alg_, BucketFor(8, 4096));
  ASSERT_TRUE(exact.ok()) << exact.status();
  EXPECT_EQ(exact->first, key);
  EXPECT_EQ(exact->second, Choice::kTunedExact);
}

// The same for a database the previous release wrote (schema v2, the driver and MiB in the
// fingerprint), read as it is by the runtime, and after a writer migrated it.
TEST_F(TunedStoreTest, DriverBumpKeepsExactAnswersFromAnOldDatabase) {
  const std::string key = "decode-bf16-d128-h32x8-contig-nowin.learned-plain.mma-n64-w4-s3-split4-g4";
  dev_.mem_bytes = int64_t{143155} << 20;
  const std::string legacy = absl::StrCat(dev_.name, "|sm_90|sms=132|mem=143155MiB|driver=13000|nvrtc=13.0");
  {
    auto s = cache::Store::Open(path_);
    ASSERT_TRUE(s.ok()) << s.status();
    cache::DeviceInfo d;
    d.fingerprint = legacy;
    d.name = dev_.name;
    ASSERT_TRUE((*s)->UpsertDevice(d).ok());
    cache::BestConfig c;
    c.device_fingerprint = legacy;
    c.problem_key = ProblemKey(problem_, alg_);
    c.bucket = "b8-l4096";
    c.variant_key = key;
    c.median_us = 10;
    c.generator_version = kGeneratorVersion;
    c.nvrtc_version = NvrtcVersionNumber(dev_.nvrtc_version);
    ASSERT_TRUE((*s)->SetBestConfig(c).ok());
  }
  {
    auto raw = cache::Db::Open(path_);
    ASSERT_TRUE(raw.ok());
    ASSERT_TRUE(raw->SetUserVersion(2).ok());
  }
  for (const int driver : {13000, 13010}) {
    DeviceInfo d = dev_;
    d.driver_version = driver;
    auto db = TunedStore::Open(path_, d);
    ASSERT_TRUE(db.ok()) << db.status();
    auto exact = (*db)->Lookup(problem_, alg_, BucketFor(8, 4096));
    ASSERT_TRUE(exact.ok()) << exact.status();
    EXPECT_EQ(exact->second, Choice::kTunedExact) << driver;
  }
  {
    auto ro = cache::Db::Open(path_);
    EXPECT_EQ(*ro->UserVersion(), 2);  // the reader left it alone
  }
  ASSERT_TRUE(cache::Store::Open(path_).ok());  // a writer migrates it (v3)
  DeviceInfo d = dev_;
  d.driver_version = 13010;
  auto db = TunedStore::Open(path_, d);
  ASSERT_TRUE(db.ok()) << db.status();
  auto exact = (*db)->Lookup(problem_, alg_, BucketFor(8, 4096));
  ASSERT_TRUE(exact.ok()) << exact.status();
  EXPECT_EQ(exact->second, Choice::kTunedExact);
}

// The runtime's default database may not exist: no tuned configs, no error, no file; a
// database written later is found (looked for again at most once a second).
TEST_F(TunedStoreTest, MissingDatabaseHasNothingTunedAndIsNotCreated) {
  auto db = TunedStore::Open(path_, dev_);
  ASSERT_TRUE(db.ok()) << db.status();
  EXPECT_EQ((*db)->Lookup(problem_, alg_, BucketFor(8, 4096)).status().code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(std::filesystem::exists(path_));
  const std::string key = "decode-bf16-d128-h32x8-contig-nowin.learned-plain.mma-n64-w4-s3-split4-g4";
  Put("b8-l4096", key);
  absl::StatusOr<std::pair<std::string, Choice>> got;
  for (int i = 0; i < 100 && !got.ok(); ++i) {  // up to 10 s: the retry is due after 1 s
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    got = (*db)->Lookup(problem_, alg_, BucketFor(8, 4096));
  }
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->second, Choice::kTunedExact);
}

// The runtime reads; it never writes or migrates: the file's bytes stay as they were.
TEST_F(TunedStoreTest, LookupsLeaveTheFileUntouched) {
  Put("b8-l4096", "decode-bf16-d128-h32x8-contig-nowin.learned-plain.mma-n64-w4-s3-split4-g4");
  auto read = [this] {
    std::ifstream in(path_, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  const std::string before = read();
  {
    auto db = TunedStore::Open(path_, dev_);
    ASSERT_TRUE(db.ok()) << db.status();
    EXPECT_TRUE((*db)->Lookup(problem_, alg_, BucketFor(8, 4096)).ok());
    EXPECT_TRUE((*db)->Lookup(problem_, alg_, BucketFor(64, 4096)).ok());
  }
  EXPECT_EQ(read(), before);
}

// A file that exists but is no database is an error with the way out in the message.
TEST_F(TunedStoreTest, UnreadableDatabaseIsAnErrorNamingTheOptOut) {
  std::ofstream(path_) << "not a database, just text that is long enough to have a header of 100 bytes ......"
                          "..................................................";
  auto db = TunedStore::Open(path_, dev_);
  ASSERT_FALSE(db.ok());
  EXPECT_NE(db.status().message().find("PARALLAX_DB=none"), std::string::npos) << db.status();
}

}  // namespace
}  // namespace parallax
