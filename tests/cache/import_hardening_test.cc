// Import treats its file as untrusted input: hostile schemas are refused before anything of
// them runs, every bad row is named and nothing merged, the store's lock is held only for
// short batches, cancel and the time limit stop it, and the de-duplication key keeps every
// measurement that differs.
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "parallax/cache/db.h"
#include "parallax/cache/store.h"
#include "test_util.h"

namespace parallax::cache::testing {
namespace {

class ImportHardeningTest : public CacheTest {
 protected:
  // A sound source: a device, a problem, two variants, a run, measurements in two buckets,
  // a best config and a binary.
  std::string MakeSource(absl::string_view name, int extra_measurements = 0) {
    const std::string path = PathFor(name);
    auto store = Store::Open(path);
    EXPECT_TRUE(store.ok()) << store.status();
    auto ids = SeedEntities(**store);
    EXPECT_TRUE(ids.ok()) << ids.status();
    auto run = (*store)->StartRun(ids->device, {{"problems", nlohmann::json::array()},
                                                {"budget_seconds", 10}});
    EXPECT_TRUE(run.ok());
    Measurement m = OkMeasurement(ids->device, ids->problem, ids->variant_a, 5000, 10);
    m.run_id = *run;
    EXPECT_TRUE((*store)->RecordMeasurement(m).ok());
    for (int i = 0; i < extra_measurements; ++i) {
      Measurement e = OkMeasurement(ids->device, ids->problem, ids->variant_b, 6000 + i, 12);
      EXPECT_TRUE((*store)->RecordMeasurement(e).ok());
    }
    EXPECT_TRUE((*store)
                    ->SetBestConfig({TestDevice().fingerprint, kProblemKey, "b1-l4096",
                                     kVariantKeyA, 10, 3, 13000, 0})
                    .ok());
    EXPECT_TRUE((*store)->PutBinary({"xxh3:abc", "sm_90a", 3, 13000, 13000, "src", {1, 2}, "", 0}).ok());
    return path;
  }

  // Raw SQL on a file, with sqlite's own guards off: what a hostile writer can do.
  void Tamper(const std::string& path, const std::string& sql) {
    auto db = Db::Open(path);
    ASSERT_TRUE(db.ok()) << db.status();
    ASSERT_OK(db->Exec("PRAGMA foreign_keys=OFF; PRAGMA ignore_check_constraints=ON;"));
    ASSERT_OK(db->Exec(sql));
  }

  std::unique_ptr<Store> Dest() {
    auto store = Store::Open(PathFor("dest.db"));
    EXPECT_TRUE(store.ok()) << store.status();
    return std::move(*store);
  }
};

int64_t Total(const Store& unused, const std::string& path) {
  (void)unused;
  int64_t total = 0;
  for (const char* t : {"devices", "problems", "variants", "tuning_runs", "measurements",
                        "best_configs", "binaries"}) {
    total += CountRows(path, t).value_or(-1);
  }
  return total;
}

TEST_F(ImportHardeningTest, ARecursiveViewIsRefusedAtOnceAndNeverRun) {
  const std::string src = MakeSource("src.db");
  // A view standing in for a table: reading it would never end (86 s under the lock before).
  Tamper(src,
         "DROP TABLE best_configs; CREATE VIEW best_configs AS WITH RECURSIVE c(x) AS "
         "(SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT 'd' AS device_id, 'p' AS problem_key, "
         "'' AS bucket, 'v' AS variant_key, 1.0 AS median_us, 1 AS generator_version, "
         "1 AS nvrtc_version, x AS updated_at FROM c;");
  auto dest = Dest();
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<ImportStats> stats = dest->Import(src);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(stats.status().code(), absl::StatusCode::kInvalidArgument) << stats.status();
  EXPECT_NE(stats.status().message().find("view 'best_configs'"), std::string::npos) << stats.status();
  EXPECT_LT(seconds, 5.0);
  EXPECT_EQ(Total(*dest, dest->path()), 0);
}

TEST_F(ImportHardeningTest, TriggersExtraObjectsAndAlteredTablesAreRefused) {
  const std::vector<std::string> tampering = {
      "CREATE TRIGGER t AFTER INSERT ON devices BEGIN DELETE FROM devices; END;",
      "CREATE TABLE extra (x);",
      "CREATE INDEX sneaky ON devices(name);",
      "ALTER TABLE variants ADD COLUMN notes TEXT;",
      "DROP INDEX measurements_by_run;",
  };
  for (size_t i = 0; i < tampering.size(); ++i) {
    SCOPED_TRACE(tampering[i]);
    const std::string src = MakeSource(absl::StrCat("src", i, ".db"));
    Tamper(src, tampering[i]);
    auto dest = Dest();
    absl::StatusOr<ImportStats> stats = dest->Import(src);
    EXPECT_EQ(stats.status().code(), absl::StatusCode::kInvalidArgument) << stats.status();
    EXPECT_NE(stats.status().message().find("not a Parallax cache export"), std::string::npos);
    EXPECT_EQ(Total(*dest, dest->path()), 0);
  }
}

struct BadRow {
  const char* sql;
  const char* expect;  // in the error message
};

TEST_F(ImportHardeningTest, EveryBadRowIsNamedAndNothingIsMerged) {
  const std::vector<BadRow> cases = {
      {"UPDATE best_configs SET median_us = 'abc'", "best_configs row 1: median_us holds a text"},
      {"UPDATE best_configs SET median_us = -1", "median_us=-1 is not a finite positive"},
      {"UPDATE best_configs SET median_us = 0", "median_us=0 is not a finite positive"},
      {"UPDATE best_configs SET median_us = 9e999", "median_us=inf"},
      {"UPDATE best_configs SET variant_key = 'prefill-x.y.z'", "not a variant of problem_key"},
      {"UPDATE best_configs SET generator_version = 0", "generator_version=0"},
      {"UPDATE best_configs SET bucket = 'b 1'", "bucket has a space or a non-printable"},
      {"UPDATE measurements SET median_us = 'abc'", "measurements row 1: median_us holds a text"},
      {"UPDATE measurements SET median_us = NULL", "median_us is missing on an ok measurement"},
      {"UPDATE measurements SET min_us = 1e9", "not ordered"},
      {"UPDATE measurements SET status = 'great'", "is not a measurement status"},
      {"UPDATE measurements SET device_id = 999", "device_id=999 refers to no row"},
      {"UPDATE measurements SET run_id = 999", "run_id=999 refers to no row"},
      {"UPDATE measurements SET rel_error = -1", "rel_error"},
      {"UPDATE measurements SET reps = 'many'", "reps holds a text"},
      {"UPDATE tuning_runs SET params_json = '[]'", "params_json is not a JSON object"},
      {"UPDATE tuning_runs SET params_json = '\"x\"'", "params_json is not a JSON object"},
      {"UPDATE tuning_runs SET params_json = '42'", "params_json is not a JSON object"},
      {"UPDATE tuning_runs SET params_json = 'not json'", "params_json is not valid JSON"},
      {"UPDATE tuning_runs SET params_json = '{\"problems\":\"x\"}'", "'problems' is not an array"},
      {"UPDATE tuning_runs SET params_json = '{\"budget_seconds\":\"abc\"}'", "'budget_seconds' is not a number"},
      {"UPDATE tuning_runs SET params_json = '{\"requested_device\":\"z\"}'", "'requested_device' is not an integer"},
      {"UPDATE tuning_runs SET progress_json = '[1]'", "progress_json is not a JSON object"},
      {"UPDATE tuning_runs SET status = 'bogus'", "is not a run status"},
      {"UPDATE problems SET json = '[]'", "problems row 1: json is not a JSON object"},
      {"UPDATE devices SET fingerprint = ''", "fingerprint is empty"},
      {"UPDATE devices SET fingerprint = 'NVIDIA' || char(10)", "fingerprint has a space or a non-printable"},
      {"UPDATE devices SET sm_count = -5", "sm_count=-5"},
      {"UPDATE variants SET key = X'00' WHERE id = 1", "key holds a blob"},
      {"UPDATE binaries SET cubin = 'text'", "binaries row xxh3:abc: cubin holds a text"},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(cases[i].sql);
    const std::string src = MakeSource(absl::StrCat("src", i, ".db"));
    Tamper(src, cases[i].sql);
    auto dest = Dest();
    absl::StatusOr<ImportStats> stats = dest->Import(src);
    EXPECT_EQ(stats.status().code(), absl::StatusCode::kInvalidArgument) << stats.status();
    EXPECT_NE(stats.status().message().find(cases[i].expect), std::string::npos) << stats.status();
    EXPECT_NE(stats.status().message().find("nothing was merged"), std::string::npos) << stats.status();
    EXPECT_EQ(Total(*dest, dest->path()), 0);
    dest.reset();
    std::filesystem::remove(PathFor("dest.db"));
  }
}

TEST_F(ImportHardeningTest, RealFingerprintsWithSpacesImport) {
  const std::string src = MakeSource("src.db");
  Tamper(src, "UPDATE devices SET fingerprint = 'NVIDIA H200|sm_90|sms=132|mem=143155MiB|driver=13000|nvrtc=13.0'");
  auto dest = Dest();
  ASSERT_OK_AND_ASSIGN(ImportStats stats, dest->Import(src));
  EXPECT_EQ(stats.devices.inserted, 1);
  EXPECT_EQ(stats.best_configs.inserted, 1);
}

TEST_F(ImportHardeningTest, KeyCheckersRefuseKeysTheCallerCannotParse) {
  const std::string src = MakeSource("src.db");
  Tamper(src, absl::StrCat("UPDATE variants SET key = key || '-testhang' WHERE key = '", kVariantKeyB, "'"));
  auto dest = Dest();
  ImportOptions o;
  o.check_variant_key = [](absl::string_view key) {
    return absl::EndsWith(key, "-testhang") ? absl::InvalidArgumentError("test-only variant")
                                            : absl::OkStatus();
  };
  absl::StatusOr<ImportStats> stats = dest->Import(src, o);
  EXPECT_EQ(stats.status().code(), absl::StatusCode::kInvalidArgument) << stats.status();
  EXPECT_NE(stats.status().message().find("test-only variant"), std::string::npos) << stats.status();
  EXPECT_EQ(Total(*dest, dest->path()), 0);
}

TEST_F(ImportHardeningTest, MeasurementsInDifferentBucketsWithinOneMillisecondAreAllKept) {
  const std::string src_path = PathFor("src.db");
  {
    ASSERT_OK_AND_ASSIGN(auto src, Store::Open(src_path));
    ASSERT_OK_AND_ASSIGN(Ids ids, SeedEntities(*src));
    for (const char* bucket : {"b1-l1024", "b8-l1024", "b1-l4096"}) {
      Measurement m = OkMeasurement(ids.device, ids.problem, ids.variant_a, 1700000000000, 10);
      m.bucket = bucket;
      ASSERT_OK(src->RecordMeasurement(m).status());
    }
    // Two GPUs of one model share a fingerprint: same variant, bucket and millisecond,
    // another median.
    Measurement twin = OkMeasurement(ids.device, ids.problem, ids.variant_a, 1700000000000, 11);
    twin.bucket = "b1-l1024";
    ASSERT_OK(src->RecordMeasurement(twin).status());
    Measurement timeout = OkMeasurement(ids.device, ids.problem, ids.variant_a, 1700000000000, 10);
    timeout.status = MeasurementStatus::kTimeout;
    timeout.median_us = timeout.min_us = timeout.max_us = std::nullopt;
    ASSERT_OK(src->RecordMeasurement(timeout).status());
  }
  auto dest = Dest();
  ASSERT_OK_AND_ASSIGN(ImportStats stats, dest->Import(src_path));
  EXPECT_EQ(stats.measurements.inserted, 5);
  ASSERT_OK_AND_ASSIGN(stats, dest->Import(src_path));  // and nothing twice
  EXPECT_EQ(stats.measurements.inserted, 0);
  EXPECT_EQ(stats.measurements.skipped, 5);
  EXPECT_EQ(CountRows(dest->path(), "measurements").value_or(-1), 5);
}

TEST_F(ImportHardeningTest, BinariesAreNeverImportedAndConflictsAreCounted) {
  const std::string src = MakeSource("src.db");
  auto dest = Dest();
  ASSERT_OK(dest->PutBinary({"xxh3:abc", "sm_90a", 3, 13000, 13000, "src", {9, 9}, "", 0}));
  ASSERT_OK_AND_ASSIGN(ImportStats stats, dest->Import(src));
  EXPECT_EQ(stats.binaries.inserted, 0);
  EXPECT_EQ(stats.binaries.skipped, 1);
  EXPECT_EQ(stats.binaries.conflicts, 1);
  ASSERT_OK_AND_ASSIGN(BinaryEntry ours, dest->GetBinary("xxh3:abc"));
  EXPECT_EQ(ours.cubin, (std::vector<uint8_t>{9, 9}));
}

TEST_F(ImportHardeningTest, CancelStopsBetweenBatchesAndAReimportCompletes) {
  const std::string src = MakeSource("src.db", /*extra_measurements=*/40);
  auto full = Store::Open(PathFor("full.db"));
  ASSERT_TRUE(full.ok());
  ASSERT_OK((*full)->Import(src).status());

  auto dest = Dest();
  std::atomic<int> checks{0};
  ImportOptions o;
  o.rows_per_transaction = 4;
  o.cancelled = [&] { return ++checks > 6; };
  absl::StatusOr<ImportStats> stats = dest->Import(src, o);
  EXPECT_EQ(stats.status().code(), absl::StatusCode::kCancelled) << stats.status();
  EXPECT_NE(stats.status().message().find("importing the same file again completes it"), std::string::npos)
      << stats.status();
  const int64_t partial = Total(*dest, dest->path());
  EXPECT_GT(partial, 0);
  EXPECT_LT(partial, Total(**full, (*full)->path()));
  ASSERT_OK(dest->Import(src).status());
  EXPECT_EQ(Total(*dest, dest->path()), Total(**full, (*full)->path()));
  ASSERT_OK_AND_ASSIGN(VerifyReport report, dest->Verify());
  EXPECT_TRUE(report.ok);
}

TEST_F(ImportHardeningTest, TheTimeLimitStopsAnImport) {
  const std::string src = MakeSource("src.db", 40);
  auto dest = Dest();
  ImportOptions o;
  o.time_limit_ms = 1;
  o.rows_per_transaction = 1;
  // Each check takes longer than the whole limit, so the deadline has passed by the next.
  o.cancelled = [] {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    return false;
  };
  absl::StatusOr<ImportStats> stats = dest->Import(src, o);
  EXPECT_EQ(stats.status().code(), absl::StatusCode::kDeadlineExceeded) << stats.status();
}

// Between its transactions an import leaves a gap, so writers waiting on the Store's mutex
// (same connection) and on SQLite's lock from their busy handler (another connection, as
// another process would) get in instead of losing every race to the next BEGIN.
TEST_F(ImportHardeningTest, OtherWritersGetInWhileALargeImportRuns) {
  const std::string src = MakeSource("src.db", 1500);
  auto dest = Dest();
  ASSERT_OK_AND_ASSIGN(auto other, Store::Open(dest->path()));
  std::atomic<bool> importing{true}, started{false};
  std::atomic<int> same_store{0}, other_connection{0};
  ImportOptions o;
  o.rows_per_transaction = 16;
  o.cancelled = [&] {
    started = true;
    return false;
  };
  auto writer = [&](Store& store, std::atomic<int>& count, const char* tag) {
    while (!started) std::this_thread::yield();
    for (int i = 0; i < 10 && importing; ++i) {
      if (store.UpsertDevice(TestDevice(absl::StrCat(tag, i))).ok() && importing) ++count;
    }
  };
  std::thread a([&] { writer(*dest, same_store, "same-"); });
  std::thread b([&] { writer(*other, other_connection, "other-"); });
  absl::StatusOr<ImportStats> stats = dest->Import(src, o);
  importing = false;
  a.join();
  b.join();
  ASSERT_OK(stats.status());
  EXPECT_EQ(stats->measurements.inserted, 1501);
  EXPECT_GT(same_store.load(), 0) << "a writer on the same Store waited out the whole import";
  EXPECT_GT(other_connection.load(), 0) << "a writer on another connection waited out the whole import";
}

TEST_F(ImportHardeningTest, GarbageAndTruncatedFilesAreInvalidArgument) {
  const std::string src = MakeSource("src.db");
  const std::string bytes = ReadBytes(src);
  WriteBytes(PathFor("trunc.db"), bytes.substr(0, bytes.size() / 2));
  WriteBytes(PathFor("text.db"), std::string(4096, 'x'));
  auto dest = Dest();
  for (const char* name : {"trunc.db", "text.db"}) {
    absl::StatusOr<ImportStats> stats = dest->Import(PathFor(name));
    EXPECT_EQ(stats.status().code(), absl::StatusCode::kInvalidArgument) << name << ": " << stats.status();
  }
}

TEST_F(ImportHardeningTest, OpenRemovesImportCopiesOfDeadProcessesOnly) {
  const std::string db = PathFor("cache.db");
  { ASSERT_TRUE(Store::Open(db).ok()); }
  const pid_t child = fork();
  if (child == 0) _exit(0);
  ASSERT_GT(child, 0);
  waitpid(child, nullptr, 0);  // a pid that is certainly gone now
  const std::string stale = absl::StrCat(db, ".import-", child, "-7.tmp");
  const std::string live = absl::StrCat(db, ".import-", getpid(), "-8.tmp");
  WriteBytes(stale, "left by a crash");
  WriteBytes(stale + "-wal", "and its wal");
  WriteBytes(live, "in use");
  { ASSERT_TRUE(Store::Open(db).ok()); }
  EXPECT_FALSE(std::filesystem::exists(stale));
  EXPECT_FALSE(std::filesystem::exists(stale + "-wal"));
  EXPECT_TRUE(std::filesystem::exists(live));
}

TEST_F(ImportHardeningTest, VersionTwoMigratesAVersionOneFile) {
  const std::string path = PathFor("v1.db");
  {
    ASSERT_OK_AND_ASSIGN(auto store, Store::Open(path));
    ASSERT_OK(store->PutBinary({"xxh3:imported-unchecked", "sm_90a", 3, 13000, 13000, "", {1}, "", 0}));
  }
  // Back to exactly what v1 wrote.
  Tamper(path,
         "DROP INDEX measurements_by_combo; CREATE INDEX measurements_by_combo\n"
         "  ON measurements(device_id, problem_id, variant_id, generator_version, measured_at);"
         "PRAGMA user_version=1;");
  ASSERT_OK_AND_ASSIGN(auto store, Store::Open(path));
  ASSERT_OK_AND_ASSIGN(int version, store->SchemaVersion());
  EXPECT_EQ(version, BuiltinVersion());  // through v2 and on
  EXPECT_EQ(store->GetBinary("xxh3:imported-unchecked").status().code(), absl::StatusCode::kNotFound);
  ASSERT_OK_AND_ASSIGN(Db raw, Db::Open(path));
  ASSERT_OK_AND_ASSIGN(int64_t has_bucket,
                       raw.QueryInt("SELECT COUNT(*) FROM sqlite_schema WHERE name = "
                                    "'measurements_by_combo' AND sql LIKE '%bucket%'"));
  EXPECT_EQ(has_bucket, 1);
}

}  // namespace
}  // namespace parallax::cache::testing
