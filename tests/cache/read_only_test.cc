// Read-only stores (the runtime, `db show`): never create, migrate or write the file, and
// still read empty files, older schemas and files a writer changes meanwhile.
#include <sys/stat.h>

#include <filesystem>

#include "parallax/cache/db.h"
#include "parallax/cache/device_key.h"
#include "parallax/cache/schema.h"
#include "parallax/cache/store.h"
#include "test_util.h"

namespace parallax::cache::testing {
namespace {

using ReadOnlyTest = CacheTest;

constexpr char kLegacy13000[] = "NVIDIA H200|sm_90|sms=132|mem=143155MiB|driver=13000|nvrtc=13.0";
constexpr char kLegacy13010[] = "NVIDIA H200|sm_90|sms=132|mem=143155MiB|driver=13010|nvrtc=13.0";
constexpr char kCurrent[] = "NVIDIA H200|sm_90|sms=132|mem=140GiB|nvrtc=13.0";

StoreOptions ReadOnly() {
  StoreOptions o;
  o.read_only = true;
  return o;
}

// Modification time to the nanosecond, with the bytes: what "untouched" means.
struct FileState {
  std::string bytes;
  int64_t mtime_ns = -1;
  bool operator==(const FileState&) const = default;
};
FileState StateOf(const std::string& path) {
  struct stat st {};
  FileState s;
  if (::stat(path.c_str(), &st) != 0) return s;
  s.bytes = ReadBytes(path);
  s.mtime_ns = int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec;
  return s;
}

BestConfig Best(const std::string& fingerprint, const std::string& bucket, const char* key, double us,
                int gen = 3, int nvrtc = 13000) {
  BestConfig c;
  c.device_fingerprint = fingerprint;
  c.problem_key = kProblemKey;
  c.bucket = bucket;
  c.variant_key = key;
  c.median_us = us;
  c.generator_version = gen;
  c.nvrtc_version = nvrtc;
  return c;
}

// A schema-v2 file as the previous release wrote it: v2 and v3 share the layout, so a v3
// file with driver fingerprints and user_version 2 is exactly that.
void WriteV2File(const std::string& path) {
  {
    ASSERT_OK_AND_ASSIGN(auto store, Store::Open(path));
    ASSERT_OK(SeedEntities(*store, kLegacy13000).status());
    ASSERT_OK(store->SetBestConfig(Best(kLegacy13000, "b1-l4096", kVariantKeyA, 10)));
  }
  ASSERT_OK_AND_ASSIGN(Db db, Db::Open(path));
  ASSERT_OK(db.SetUserVersion(2));
}

TEST_F(ReadOnlyTest, MissingFileIsNotFoundAndNotCreated) {
  const std::string path = PathFor("absent.db");
  absl::StatusOr<std::unique_ptr<Store>> store = Store::Open(path, ReadOnly());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kNotFound) << store.status();
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_FALSE(std::filesystem::exists(path + "-wal"));
}

TEST_F(ReadOnlyTest, EmptyFileReadsAsEmptyAndStaysEmpty) {
  const std::string path = PathFor("empty.db");
  WriteBytes(path, "");
  const FileState before = StateOf(path);
  {
    ASSERT_OK_AND_ASSIGN(auto store, Store::Open(path, ReadOnly()));
    ASSERT_OK_AND_ASSIGN(int v, store->SchemaVersion());
    EXPECT_EQ(v, 0);
    ASSERT_OK_AND_ASSIGN(auto devices, store->ListDevices());
    EXPECT_TRUE(devices.empty());
    ASSERT_OK_AND_ASSIGN(auto best, store->ListBestConfigs());
    EXPECT_TRUE(best.empty());
    EXPECT_EQ(store->GetBestConfig(kCurrent, kProblemKey, "b1-l4096", {3, 13000}).status().code(),
              absl::StatusCode::kNotFound);
  }
  EXPECT_EQ(StateOf(path), before);
  EXPECT_EQ(std::filesystem::file_size(path), 0u);
}

TEST_F(ReadOnlyTest, OlderSchemaIsReadAsItIsNeverMigrated) {
  const std::string path = PathFor("v2.db");
  WriteV2File(path);
  const FileState before = StateOf(path);
  {
    ASSERT_OK_AND_ASSIGN(auto store, Store::Open(path, ReadOnly()));
    ASSERT_OK_AND_ASSIGN(int v, store->SchemaVersion());
    EXPECT_EQ(v, 2);
    // The driver-free fingerprint finds the row filed under the driver one.
    ASSERT_OK_AND_ASSIGN(BestConfig c, store->GetBestConfig(kCurrent, kProblemKey, "b1-l4096", {3, 13000}));
    EXPECT_EQ(c.variant_key, kVariantKeyA);
    BestConfigFilter f;
    f.device_fingerprint = kCurrent;
    ASSERT_OK_AND_ASSIGN(auto rows, store->ListBestConfigs(f));
    EXPECT_EQ(rows.size(), 1u);
  }
  EXPECT_EQ(StateOf(path), before);
  DbOptions ro;
  ro.read_only = true;
  ASSERT_OK_AND_ASSIGN(Db db, Db::Open(path, ro));
  ASSERT_OK_AND_ASSIGN(int v, db.UserVersion());
  EXPECT_EQ(v, 2);
  ASSERT_OK_AND_ASSIGN(int64_t legacy,
                       db.QueryInt("SELECT COUNT(*) FROM devices WHERE fingerprint LIKE '%driver=13000%'"));
  EXPECT_EQ(legacy, 1);
}

// A future step that changes what readers query is read through a migrated in-memory copy.
TEST_F(ReadOnlyTest, LayoutChangeIsReadThroughAMigratedCopy) {
  const std::string path = PathFor("cache.db");
  {
    ASSERT_OK_AND_ASSIGN(auto store, Store::Open(path));
    ASSERT_OK(SeedEntities(*store, kCurrent).status());
    ASSERT_OK(store->SetBestConfig(Best(kCurrent, "b1-l4096", kVariantKeyB, 7)));
  }
  const FileState before = StateOf(path);
  StoreOptions o = ReadOnly();
  bool applied = false;
  o.extra_migrations.push_back({BuiltinVersion() + 1, "rename best_configs", [&applied](Db& db) {
                                  applied = true;
                                  return db.Exec(
                                      "ALTER TABLE best_configs RENAME TO best_configs_old;"
                                      "CREATE TABLE best_configs AS SELECT * FROM best_configs_old;"
                                      "DROP TABLE best_configs_old;");
                                }});
  {
    ASSERT_OK_AND_ASSIGN(auto store, Store::Open(path, o));
    EXPECT_TRUE(applied);
    ASSERT_OK_AND_ASSIGN(int v, store->SchemaVersion());
    EXPECT_EQ(v, BuiltinVersion());
    ASSERT_OK_AND_ASSIGN(BestConfig c, store->GetBestConfig(kCurrent, kProblemKey, "b1-l4096", {3, 13000}));
    EXPECT_EQ(c.variant_key, kVariantKeyB);
    EXPECT_FALSE(store->UpsertVariant("x", 1).ok());  // the copy is read-only too
  }
  EXPECT_EQ(StateOf(path), before);
}

TEST_F(ReadOnlyTest, NewerSchemaIsRefusedClearly) {
  const std::string path = PathFor("new.db");
  {
    ASSERT_OK_AND_ASSIGN(auto store, Store::Open(path));
  }
  {
    ASSERT_OK_AND_ASSIGN(Db db, Db::Open(path));
    ASSERT_OK(db.SetUserVersion(BuiltinVersion() + 5));
  }
  const FileState before = StateOf(path);
  absl::StatusOr<std::unique_ptr<Store>> store = Store::Open(path, ReadOnly());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(store.status().message().find("newer"), absl::string_view::npos) << store.status();
  EXPECT_EQ(StateOf(path), before);
}

TEST_F(ReadOnlyTest, WritesFailAndLeaveTheFileAlone) {
  const std::string path = PathFor("cache.db");
  {
    ASSERT_OK_AND_ASSIGN(auto store, Store::Open(path));
    ASSERT_OK(SeedEntities(*store, kCurrent).status());
  }
  const FileState before = StateOf(path);
  {
    ASSERT_OK_AND_ASSIGN(auto store, Store::Open(path, ReadOnly()));
    EXPECT_TRUE(store->read_only());
    EXPECT_FALSE(store->UpsertDevice(TestDevice("another")).ok());
    EXPECT_FALSE(store->SetBestConfig(Best(kCurrent, "b2-l1024", kVariantKeyA, 1)).ok());
    ASSERT_OK_AND_ASSIGN(auto devices, store->ListDevices());
    EXPECT_EQ(devices.size(), 1u);
  }
  EXPECT_EQ(StateOf(path), before);
}

// `db export` reads: a read-only store exports (VACUUM INTO) and the source stays as it was.
TEST_F(ReadOnlyTest, ExportFromAReaderLeavesTheFileAlone) {
  const std::string path = PathFor("v2.db");
  WriteV2File(path);
  const FileState before = StateOf(path);
  const std::string copy = PathFor("copy.db");
  {
    ASSERT_OK_AND_ASSIGN(auto store, Store::Open(path, ReadOnly()));
    ASSERT_OK(store->Export(copy));
    EXPECT_FALSE(store->UpsertVariant("x", 1).ok());  // still read-only afterwards
  }
  EXPECT_EQ(StateOf(path), before);
  ASSERT_OK_AND_ASSIGN(auto exported, Store::Open(copy));  // the copy, a writer's: migrated
  ASSERT_OK_AND_ASSIGN(int v, exported->SchemaVersion());
  EXPECT_EQ(v, BuiltinVersion());
  ASSERT_OK_AND_ASSIGN(BestConfig c, exported->GetBestConfig(kCurrent, kProblemKey, "b1-l4096", {3, 13000}));
  EXPECT_EQ(c.device_fingerprint, kCurrent);
}

// A reader open beside a writer (the runtime while `parallax tune` runs) sees new rows.
TEST_F(ReadOnlyTest, ReaderSeesAWritersLaterRows) {
  const std::string path = PathFor("cache.db");
  ASSERT_OK_AND_ASSIGN(auto writer, Store::Open(path));
  ASSERT_OK(SeedEntities(*writer, kCurrent).status());
  ASSERT_OK_AND_ASSIGN(auto reader, Store::Open(path, ReadOnly()));
  EXPECT_FALSE(reader->GetBestConfig(kCurrent, kProblemKey, "b1-l4096", {3, 13000}).ok());
  ASSERT_OK(writer->SetBestConfig(Best(kCurrent, "b1-l4096", kVariantKeyA, 5)));
  ASSERT_OK_AND_ASSIGN(BestConfig c, reader->GetBestConfig(kCurrent, kProblemKey, "b1-l4096", {3, 13000}));
  EXPECT_EQ(c.variant_key, kVariantKeyA);
}

// One GPU under two driver fingerprints in an unmigrated file: the current entry with the
// lower time answers, whichever driver asks.
TEST_F(ReadOnlyTest, TwoDriverRowsOfOneGpuAnswerWithTheFasterCurrentOne) {
  const std::string path = PathFor("v2.db");
  {
    ASSERT_OK_AND_ASSIGN(auto store, Store::Open(path));
    ASSERT_OK(SeedEntities(*store, kLegacy13000).status());
    ASSERT_OK(store->UpsertDevice(TestDevice(kLegacy13010)).status());
    ASSERT_OK(store->SetBestConfig(Best(kLegacy13000, "b1-l4096", kVariantKeyA, 10)));
    ASSERT_OK(store->SetBestConfig(Best(kLegacy13010, "b1-l4096", kVariantKeyB, 9)));
    ASSERT_OK(store->SetBestConfig(Best(kLegacy13010, "b8-l4096", kVariantKeyB, 1, /*gen=*/2)));
    ASSERT_OK(store->SetBestConfig(Best(kLegacy13000, "b8-l4096", kVariantKeyA, 3)));
  }
  {
    ASSERT_OK_AND_ASSIGN(Db db, Db::Open(path));
    ASSERT_OK(db.SetUserVersion(2));
  }
  ASSERT_OK_AND_ASSIGN(auto store, Store::Open(path, ReadOnly()));
  for (const char* fp : {kCurrent, kLegacy13000, kLegacy13010}) {
    ASSERT_OK_AND_ASSIGN(BestConfig c, store->GetBestConfig(fp, kProblemKey, "b1-l4096", {3, 13000}));
    EXPECT_EQ(c.variant_key, kVariantKeyB) << fp;
    ASSERT_OK_AND_ASSIGN(BestConfig d, store->GetBestConfig(fp, kProblemKey, "b8-l4096", {3, 13000}));
    EXPECT_EQ(d.variant_key, kVariantKeyA) << fp << ": the faster entry is stale (generator 2)";
  }
}

}  // namespace
}  // namespace parallax::cache::testing
