// A writer dying inside a transaction (process exit or SIGKILL before COMMIT) must leave
// no trace: committed rows intact, uncommitted rows absent, file sound.
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "child_process.h"
#include "parallax/cache/db.h"
#include "parallax/cache/stmt.h"
#include "parallax/cache/store.h"
#include "parallax/cache/txn.h"
#include "test_util.h"

namespace parallax::cache::testing {
namespace {

using CrashTest = CacheTest;

constexpr int kCommitted = 10;
// ~6 MB of rows: more than sqlite's default page cache, so uncommitted pages spill into the
// WAL before the crash and recovery has to ignore them.
constexpr int kUncommitted = 6000;

enum class Death { kExit, kSigkill };

// In the child: opens its own connection, writes inside one transaction, tells the parent,
// then dies without committing.
int DieMidTransaction(const std::string& path, const Ids& ids, Death death, PipeSignal& ready) {
  absl::StatusOr<Db> db = Db::Open(path);
  if (!db.ok()) return 10;
  absl::StatusOr<Txn> txn = Txn::Begin(*db);
  if (!txn.ok()) return 11;
  absl::StatusOr<Stmt> insert = db->Prepare(
      "INSERT INTO measurements (device_id, problem_id, variant_id, bucket, status, median_us, "
      "  reps, error_text, measured_at, generator_version, nvrtc_version) "
      "VALUES (?, ?, ?, 'seq4096', 'ok', 1.0, 1, ?, ?, 3, 13000)");
  if (!insert.ok()) return 12;
  const std::string padding(1000, 'x');
  for (int i = 0; i < kUncommitted; ++i) {
    if (!insert->Reset().ok()) return 13;
    if (!insert->BindAll(ids.device, ids.problem, ids.variant_b, padding, 900000 + i).ok()) {
      return 14;
    }
    if (!insert->Run().ok()) return 15;
  }
  if (!db->Exec("UPDATE best_configs SET median_us = 0.001;").ok()) return 16;
  ready.Notify();
  if (death == Death::kExit) _exit(0);  // no destructors: Txn never rolls back
  while (true) pause();                 // wait for SIGKILL
}

void RunCrashScenario(const std::string& path, Death death) {
  Ids ids;
  {
    ASSERT_OK_AND_ASSIGN(auto store, Store::Open(path));
    ASSERT_OK_AND_ASSIGN(ids, SeedEntities(*store));
    for (int i = 0; i < kCommitted; ++i) {
      ASSERT_OK(
          store->RecordMeasurement(OkMeasurement(ids.device, ids.problem, ids.variant_a, i, 20 + i))
              .status());
    }
    ASSERT_OK(store->SetBestConfig(
        {TestDevice().fingerprint, kProblemKey, "seq4096", kVariantKeyA, 20.0, 3, 13000, 0}));
  }  // closed before fork

  PipeSignal ready;
  pid_t child = ForkChild([&] { return DieMidTransaction(path, ids, death, ready); });
  ASSERT_GT(child, 0);
  ASSERT_TRUE(ready.Wait()) << "child died early: " << WaitChild(child);
  if (death == Death::kSigkill) {
    ASSERT_EQ(kill(child, SIGKILL), 0);
    EXPECT_EQ(WaitChild(child), "signal 9");
  } else {
    EXPECT_EQ(WaitChild(child), "exit 0");
  }
  // The dead writer left uncommitted frames behind; that is what recovery must discard.
  std::error_code ec;
  EXPECT_GT(std::filesystem::file_size(path + "-wal", ec), 1u << 20);

  ASSERT_OK_AND_ASSIGN(auto store, Store::Open(path));
  ASSERT_OK_AND_ASSIGN(auto rows, store->ListMeasurements());
  EXPECT_EQ(rows.size(), static_cast<size_t>(kCommitted));
  for (const Measurement& m : rows) EXPECT_EQ(m.variant_key, kVariantKeyA);
  ASSERT_OK_AND_ASSIGN(BestConfig best, store->GetBestConfig(TestDevice().fingerprint, kProblemKey,
                                                             "seq4096", {3, 13000}));
  EXPECT_DOUBLE_EQ(best.median_us, 20.0);
  ASSERT_OK_AND_ASSIGN(VerifyReport report, store->Verify());
  EXPECT_TRUE(report.ok);
  EXPECT_TRUE(report.integrity_errors.empty());
  // And the file keeps working for writers.
  ASSERT_OK(store->RecordMeasurement(OkMeasurement(ids.device, ids.problem, ids.variant_a, 99, 1))
                .status());
}

TEST_F(CrashTest, ChildExitsBeforeCommit) { RunCrashScenario(PathFor("cache.db"), Death::kExit); }

TEST_F(CrashTest, ChildKilledBeforeCommit) {
  RunCrashScenario(PathFor("cache.db"), Death::kSigkill);
}

}  // namespace
}  // namespace parallax::cache::testing
