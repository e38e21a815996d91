// Damaged or foreign files: a clear DataLoss naming the file, and the file left exactly
// as it was (never recreated, never "repaired").
#include <filesystem>
#include <random>
#include <string>

#include "parallax/cache/store.h"
#include "test_util.h"

namespace parallax::cache::testing {
namespace {

using CorruptionTest = CacheTest;

constexpr size_t kPageSize = 4096;  // sqlite's default

void ExpectRefusedAndUntouched(const std::string& path) {
  const std::string before = ReadBytes(path);
  for (int attempt = 0; attempt < 2; ++attempt) {  // a second open must not "succeed"
    absl::StatusOr<std::unique_ptr<Store>> store = Store::Open(path);
    ASSERT_FALSE(store.ok());
    EXPECT_EQ(store.status().code(), absl::StatusCode::kDataLoss) << store.status();
    EXPECT_NE(store.status().message().find(path), absl::string_view::npos) << store.status();
    EXPECT_EQ(ReadBytes(path), before) << "the damaged file was modified";
  }
}

void FillStore(const std::string& path) {
  ASSERT_OK_AND_ASSIGN(auto store, Store::Open(path));
  ASSERT_OK_AND_ASSIGN(Ids ids, SeedEntities(*store));
  for (int i = 0; i < 3000; ++i) {
    ASSERT_OK(store
                  ->RecordMeasurement(OkMeasurement(
                      ids.device, ids.problem, i % 2 ? ids.variant_a : ids.variant_b, i, 1.0 + i))
                  .status());
  }
}

TEST_F(CorruptionTest, GarbageOverMiddlePages) {
  const std::string path = PathFor("cache.db");
  FillStore(path);
  std::string bytes = ReadBytes(path);
  ASSERT_FALSE(std::filesystem::exists(path + "-wal"));  // fully checkpointed on close
  const size_t pages = bytes.size() / kPageSize;
  ASSERT_GT(pages, 20u);
  std::mt19937 rng(1234);
  for (size_t i = pages / 2 * kPageSize; i < (pages / 2 + 4) * kPageSize; ++i) {
    bytes[i] = static_cast<char>(rng());
  }
  WriteBytes(path, bytes);
  ExpectRefusedAndUntouched(path);
}

TEST_F(CorruptionTest, NotASqliteFile) {
  const std::string path = PathFor("cache.db");
  std::string text;
  for (int i = 0; i < 500; ++i) text += "device,problem,variant,median_us\n";
  WriteBytes(path, text);
  ExpectRefusedAndUntouched(path);
}

TEST_F(CorruptionTest, TinyNonSqliteFile) {
  const std::string path = PathFor("cache.db");
  WriteBytes(path, "oops");
  ExpectRefusedAndUntouched(path);
}

TEST_F(CorruptionTest, SqliteHeaderWithGarbageBody) {
  const std::string path = PathFor("cache.db");
  FillStore(path);
  std::string bytes = ReadBytes(path);
  std::mt19937 rng(99);
  for (size_t i = 100; i < bytes.size(); ++i) bytes[i] = static_cast<char>(rng());
  WriteBytes(path, bytes);
  ExpectRefusedAndUntouched(path);
}

TEST_F(CorruptionTest, ImportOfDamagedFileIsRefused) {
  const std::string damaged = PathFor("damaged.db");
  WriteBytes(damaged, std::string(8192, 'z'));
  ASSERT_OK_AND_ASSIGN(auto store, Store::Open(PathFor("cache.db")));
  absl::StatusOr<ImportStats> stats = store->Import(damaged);
  // The file is the caller's input, not our data: a bad argument.
  EXPECT_EQ(stats.status().code(), absl::StatusCode::kInvalidArgument) << stats.status();
  EXPECT_EQ(ReadBytes(damaged), std::string(8192, 'z'));
}

}  // namespace
}  // namespace parallax::cache::testing
