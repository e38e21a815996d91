// Several writers on one file: threads with their own Store plus a forked process, all
// at once. WAL + busy_timeout must absorb the contention: no SQLITE_BUSY reaches callers.
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "child_process.h"
#include "parallax/cache/store.h"
#include "test_util.h"

namespace parallax::cache::testing {
namespace {

using ConcurrencyTest = CacheTest;

constexpr int kThreads = 6;
constexpr int kRowsPerWriter = 150;

std::string WriterVariant(int writer) { return absl::StrCat(kVariantKeyA, "-writer", writer); }

// One writer's work: its own Store, kRowsPerWriter measurements plus reads in between.
absl::Status WriteRows(const std::string& path, int writer) {
  absl::StatusOr<std::unique_ptr<Store>> store = Store::Open(path);
  if (!store.ok()) return store.status();
  absl::StatusOr<int64_t> device = (*store)->UpsertDevice(TestDevice());
  if (!device.ok()) return device.status();
  absl::StatusOr<int64_t> problem = (*store)->UpsertProblem(kProblemKey, {});
  if (!problem.ok()) return problem.status();
  absl::StatusOr<int64_t> variant = (*store)->UpsertVariant(WriterVariant(writer), 3);
  if (!variant.ok()) return variant.status();
  for (int i = 0; i < kRowsPerWriter; ++i) {
    absl::StatusOr<int64_t> id = (*store)->RecordMeasurement(
        OkMeasurement(*device, *problem, *variant, int64_t{writer} * 100000 + i, 10 + i));
    if (!id.ok()) return id.status();
    absl::StatusOr<bool> has = (*store)->HasMeasurement(*device, *problem, *variant, 3);
    if (!has.ok()) return has.status();
    if (i % 25 == 0) {
      absl::Status s =
          (*store)->SetBestConfig({TestDevice().fingerprint, kProblemKey, absl::StrCat("w", writer),
                                   WriterVariant(writer), 10.0 + i, 3, 13000, 0});
      if (!s.ok()) return s;
    }
  }
  return absl::OkStatus();
}

TEST_F(ConcurrencyTest, ThreadsAndAForkedProcessWriteAtOnce) {
  const std::string path = PathFor("shared.db");
  {
    ASSERT_OK_AND_ASSIGN(auto store, Store::Open(path));
    ASSERT_OK(SeedEntities(*store).status());
  }  // closed: no connection may be open across fork()

  PipeSignal go;
  const int child_writer = kThreads;
  pid_t child = ForkChild([&] {
    if (!go.Wait()) return 2;
    absl::Status s = WriteRows(path, child_writer);
    if (!s.ok()) std::fprintf(stderr, "child writer: %s\n", s.ToString().c_str());
    return s.ok() ? 0 : 1;
  });
  ASSERT_GT(child, 0);

  std::mutex mu;
  std::vector<std::string> errors;
  std::atomic<bool> start{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      while (!start.load()) std::this_thread::yield();
      absl::Status s = WriteRows(path, t);
      if (!s.ok()) {
        std::lock_guard lock(mu);
        errors.push_back(s.ToString());
      }
    });
  }
  go.Notify();
  start.store(true);
  for (auto& t : threads) t.join();
  EXPECT_EQ(WaitChild(child), "exit 0");
  EXPECT_TRUE(errors.empty()) << errors.front();

  ASSERT_OK_AND_ASSIGN(auto store, Store::Open(path));
  ASSERT_OK_AND_ASSIGN(auto all, store->ListMeasurements());
  EXPECT_EQ(all.size(), static_cast<size_t>((kThreads + 1) * kRowsPerWriter));
  for (int w = 0; w <= kThreads; ++w) {
    MeasurementFilter filter;
    filter.variant_key = WriterVariant(w);
    ASSERT_OK_AND_ASSIGN(auto rows, store->ListMeasurements(filter));
    EXPECT_EQ(rows.size(), static_cast<size_t>(kRowsPerWriter)) << "writer " << w;
  }
  ASSERT_OK_AND_ASSIGN(auto best, store->ListBestConfigs());
  EXPECT_EQ(best.size(), static_cast<size_t>(kThreads + 1));
  ASSERT_OK_AND_ASSIGN(VerifyReport report, store->Verify());
  EXPECT_TRUE(report.ok);
  EXPECT_EQ(report.row_counts["devices"], 1);
}

TEST_F(ConcurrencyTest, ManyOpenersOfAFreshFile) {
  // The first openers race to create the schema; migrations must run exactly once.
  const std::string path = PathFor("fresh.db");
  std::atomic<bool> start{false};
  std::mutex mu;
  std::vector<std::string> errors;
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      while (!start.load()) std::this_thread::yield();
      absl::StatusOr<std::unique_ptr<Store>> store = Store::Open(path);
      absl::Status s = store.status();
      if (s.ok()) s = (*store)->UpsertVariant(WriterVariant(t), 3).status();
      if (!s.ok()) {
        std::lock_guard lock(mu);
        errors.push_back(s.ToString());
      }
    });
  }
  start.store(true);
  for (auto& t : threads) t.join();
  EXPECT_TRUE(errors.empty()) << errors.front();
  ASSERT_OK_AND_ASSIGN(int64_t variants, CountRows(path, "variants"));
  EXPECT_EQ(variants, 8);
}

}  // namespace
}  // namespace parallax::cache::testing
