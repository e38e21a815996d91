// Device identity without the driver (device_key.h), the v3 migration that rewrites old rows
// with it, and the one default database location (paths.h).
#include <cstdlib>
#include <optional>

#include "parallax/cache/db.h"
#include "parallax/cache/device_key.h"
#include "parallax/cache/paths.h"
#include "parallax/cache/store.h"
#include "test_util.h"

namespace parallax::cache::testing {
namespace {

TEST(DeviceKeyTest, DropsTheDriverAndRoundsMemoryToGiB) {
  EXPECT_EQ(DeviceKey("NVIDIA H200|sm_90|sms=132|mem=143155MiB|driver=13000|nvrtc=13.0"),
            "NVIDIA H200|sm_90|sms=132|mem=140GiB|nvrtc=13.0");
  EXPECT_EQ(DeviceKey("NVIDIA H100 80GB HBM3|sm_90|sms=132|mem=81079MiB|driver=13010|nvrtc=13.0"),
            "NVIDIA H100 80GB HBM3|sm_90|sms=132|mem=79GiB|nvrtc=13.0");
  // Already current, or not a fingerprint at all: unchanged.
  EXPECT_EQ(DeviceKey("NVIDIA H200|sm_90|sms=132|mem=140GiB|nvrtc=13.0"),
            "NVIDIA H200|sm_90|sms=132|mem=140GiB|nvrtc=13.0");
  EXPECT_EQ(DeviceKey("h100-sxm-132sm-drv580"), "h100-sxm-132sm-drv580");
  // Two drivers of one GPU are one key; another SM count or NVRTC is another.
  EXPECT_EQ(DeviceKey("G|sm_90|sms=132|mem=1024MiB|driver=13000|nvrtc=13.0"),
            DeviceKey("G|sm_90|sms=132|mem=1024MiB|driver=13010|nvrtc=13.0"));
  EXPECT_NE(DeviceKey("G|sm_90|sms=132|mem=1024MiB|driver=13000|nvrtc=13.0"),
            DeviceKey("G|sm_90|sms=114|mem=1024MiB|driver=13000|nvrtc=13.0"));
  EXPECT_NE(DeviceKey("G|sm_90|sms=132|mem=1024MiB|driver=13000|nvrtc=13.0"),
            DeviceKey("G|sm_90|sms=132|mem=1024MiB|driver=13000|nvrtc=13.1"));
  // Rounding: half a GiB rounds up, a little less rounds down.
  EXPECT_EQ(MemoryGiB(int64_t{1536} << 20), 2);
  EXPECT_EQ(MemoryGiB((int64_t{1536} << 20) - 1), 1);
  EXPECT_EQ(MemoryGiB(int64_t{81079} << 20), 79);
}

using MigrationV3Test = CacheTest;

constexpr char kOld[] = "NVIDIA H200|sm_90|sms=132|mem=143155MiB|driver=13000|nvrtc=13.0";
constexpr char kNew[] = "NVIDIA H200|sm_90|sms=132|mem=143155MiB|driver=13010|nvrtc=13.0";
constexpr char kOther[] = "NVIDIA H100 80GB HBM3|sm_90|sms=132|mem=81079MiB|driver=13000|nvrtc=13.0";

BestConfig Best(const std::string& fp, const std::string& bucket, const char* key, double us, int gen = 3) {
  BestConfig c;
  c.device_fingerprint = fp;
  c.problem_key = kProblemKey;
  c.bucket = bucket;
  c.variant_key = key;
  c.median_us = us;
  c.generator_version = gen;
  c.nvrtc_version = 13000;
  return c;
}

// A v2 file holding one H200 under two drivers (and an H100): opening it for writing merges
// the H200 rows into one device, keeps every measurement and run, and of two best configs of
// one bucket keeps the one import would.
TEST_F(MigrationV3Test, DriverFingerprintsMergeIntoOneDevice) {
  const std::string path = PathFor("v2.db");
  int64_t old_id = 0, new_id = 0;
  {
    ASSERT_OK_AND_ASSIGN(auto store, Store::Open(path));
    ASSERT_OK_AND_ASSIGN(Ids ids, SeedEntities(*store, kOld));
    old_id = ids.device;
    DeviceInfo later = TestDevice(kNew);
    later.created_at = 2'000'000'000'000;  // tuned again after the driver update
    later.driver_version = 13010;
    ASSERT_OK_AND_ASSIGN(new_id, store->UpsertDevice(later));
    ASSERT_OK(store->UpsertDevice(TestDevice(kOther)).status());
    ASSERT_OK(store->RecordMeasurement(OkMeasurement(old_id, ids.problem, ids.variant_a, 1, 10)).status());
    ASSERT_OK(store->RecordMeasurement(OkMeasurement(new_id, ids.problem, ids.variant_b, 2, 9)).status());
    ASSERT_OK(store->StartRun(old_id, {{"what", "old"}}).status());
    ASSERT_OK(store->StartRun(new_id, {{"what", "new"}}).status());
    ASSERT_OK(store->SetBestConfig(Best(kOld, "b1-l4096", kVariantKeyA, 10)));
    ASSERT_OK(store->SetBestConfig(Best(kNew, "b1-l4096", kVariantKeyB, 12)));  // slower: dropped
    ASSERT_OK(store->SetBestConfig(Best(kOld, "b8-l4096", kVariantKeyA, 3, /*gen=*/2)));  // older: dropped
    ASSERT_OK(store->SetBestConfig(Best(kNew, "b8-l4096", kVariantKeyB, 4)));
    ASSERT_OK(store->SetBestConfig(Best(kNew, "b32-l4096", kVariantKeyB, 5)));
    ASSERT_OK(store->SetBestConfig(Best(kOther, "b1-l4096", kVariantKeyB, 6)));
  }
  {
    ASSERT_OK_AND_ASSIGN(Db db, Db::Open(path));
    ASSERT_OK(db.SetUserVersion(2));
  }
  ASSERT_OK_AND_ASSIGN(auto store, Store::Open(path));
  ASSERT_OK_AND_ASSIGN(int v, store->SchemaVersion());
  EXPECT_EQ(v, BuiltinVersion());
  ASSERT_OK_AND_ASSIGN(auto devices, store->ListDevices());
  ASSERT_EQ(devices.size(), 2u);
  const std::string h200 = DeviceKey(kOld);
  std::optional<DeviceInfo> merged;
  for (const DeviceInfo& d : devices) {
    EXPECT_EQ(d.fingerprint, DeviceKey(d.fingerprint));
    if (d.fingerprint == h200) merged = d;
  }
  ASSERT_TRUE(merged.has_value());
  EXPECT_EQ(merged->id, new_id);  // the newest row stands for the GPU
  EXPECT_EQ(merged->driver_version, 13010);
  ASSERT_OK_AND_ASSIGN(auto ms, store->ListMeasurements());
  ASSERT_EQ(ms.size(), 2u);
  for (const Measurement& m : ms) EXPECT_EQ(m.device_id, new_id);
  ASSERT_OK_AND_ASSIGN(auto runs, store->ListRuns());
  ASSERT_EQ(runs.size(), 2u);
  for (const RunInfo& r : runs) EXPECT_EQ(r.device_id, new_id);
  BestConfigFilter f;
  f.device_fingerprint = h200;
  ASSERT_OK_AND_ASSIGN(auto best, store->ListBestConfigs(f));
  ASSERT_EQ(best.size(), 3u);
  EXPECT_EQ(best[0].bucket, "b1-l4096");
  EXPECT_EQ(best[0].variant_key, kVariantKeyA);
  EXPECT_EQ(best[1].bucket, "b32-l4096");
  EXPECT_EQ(best[2].bucket, "b8-l4096");
  EXPECT_EQ(best[2].variant_key, kVariantKeyB);
  ASSERT_OK_AND_ASSIGN(auto all, store->ListBestConfigs());
  EXPECT_EQ(all.size(), 4u);
  ASSERT_OK_AND_ASSIGN(VerifyReport report, store->Verify());
  EXPECT_TRUE(report.ok);
  EXPECT_TRUE(report.foreign_key_errors.empty());
}

// ---- the default database location ----

class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value) ::setenv(name, value, 1);
    else ::unsetenv(name);
  }
  ~ScopedEnv() {
    if (old_) ::setenv(name_, old_->c_str(), 1);
    else ::unsetenv(name_);
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

TEST(DbPathTest, ExplicitThenEnvThenXdgThenHome) {
  ScopedEnv home("HOME", "/home/u");
  ScopedEnv xdg("XDG_DATA_HOME", nullptr);
  ScopedEnv env(kDbEnvVar, nullptr);
  EXPECT_EQ(DefaultDbPath(), "/home/u/.local/share/parallax/tuner.db");
  EXPECT_EQ(ResolveDbPath(""), "/home/u/.local/share/parallax/tuner.db");
  EXPECT_STREQ(DbPathSource(""), "default");
  {
    ScopedEnv x("XDG_DATA_HOME", "/data");
    EXPECT_EQ(ResolveDbPath(""), "/data/parallax/tuner.db");
  }
  {
    ScopedEnv x("XDG_DATA_HOME", "relative/dir");  // not absolute: ignored, as the XDG spec says
    EXPECT_EQ(ResolveDbPath(""), "/home/u/.local/share/parallax/tuner.db");
  }
  {
    ScopedEnv e(kDbEnvVar, "/env/tuner.db");
    EXPECT_EQ(ResolveDbPath(""), "/env/tuner.db");
    EXPECT_STREQ(DbPathSource(""), "$PARALLAX_DB");
    EXPECT_EQ(ResolveDbPath("/flag.db"), "/flag.db");  // an explicit path wins
    EXPECT_STREQ(DbPathSource("/flag.db"), "given");
  }
  {
    ScopedEnv e(kDbEnvVar, "none");
    EXPECT_EQ(ResolveDbPath(""), "");
    EXPECT_EQ(ResolveDbPath("/flag.db"), "/flag.db");
  }
  EXPECT_EQ(ResolveDbPath("none"), "");
  {
    ScopedEnv e(kDbEnvVar, "");  // empty: as if unset
    EXPECT_EQ(ResolveDbPath(""), "/home/u/.local/share/parallax/tuner.db");
  }
}

}  // namespace
}  // namespace parallax::cache::testing
