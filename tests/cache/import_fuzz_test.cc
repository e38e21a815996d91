// Fuzzing the import path: corrupt bytes, truncated files, hostile rows and hostile schema
// objects, thrown at Store::Import for a bounded time. Every import must return (no crash,
// no hang past its time limit), answer with a status meant for bad input, and leave the
// destination sound. PLX_FUZZ_SECONDS (default 15) and PLX_FUZZ_SEED set the run; a failure
// prints the seed and iteration to replay.
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <random>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "parallax/cache/db.h"
#include "parallax/cache/store.h"
#include "test_util.h"

namespace parallax::cache::testing {
namespace {

using ImportFuzzTest = CacheTest;

double EnvDouble(const char* name, double fallback) {
  const char* v = std::getenv(name);
  return v != nullptr ? std::atof(v) : fallback;
}

const std::vector<std::pair<const char*, std::vector<const char*>>> kColumns = {
    {"devices", {"fingerprint", "name", "sm_count", "cc_major", "mem_bytes", "created_at", "id"}},
    {"problems", {"key", "json", "id"}},
    {"variants", {"key", "generator_version", "id"}},
    {"tuning_runs", {"device_id", "started_at", "finished_at", "status", "params_json", "progress_json"}},
    {"measurements", {"run_id", "device_id", "problem_id", "variant_id", "bucket", "status", "median_us",
                      "min_us", "max_us", "reps", "error_text", "rel_error", "measured_at",
                      "generator_version", "nvrtc_version"}},
    {"best_configs", {"device_id", "problem_key", "bucket", "variant_key", "median_us",
                      "generator_version", "nvrtc_version", "updated_at"}},
    {"binaries", {"key", "arch", "cubin", "source_hash", "generator_version"}},
};

const std::vector<const char*> kValues = {
    "NULL", "0", "-1", "1", "9e999", "-9e999", "1.5", "9223372036854775807",
    "-9223372036854775808", "'abc'", "''", "X'00FF'", "'[]'", "'{}'", "'[1,2'",
    "'{\"problems\":1}'", "'{\"problems\":[1]}'", "'{\"budget_seconds\":\"x\"}'",
    "'{\"requested_device\":1e300}'", "'running'", "'ok'", "'timeout'", "'b1-l4096'",
    "' spaced key '", "char(10)", "zeroblob(100)",
    "'decode-bf16-d128-h32x8-contig-nowin.learned-plain.mma-n64-w4-s2-splitauto-g4-testhang'",
    "'decode-bf16-d128-h32x8-contig-nowin.learned-plain.mma-n64-w4-s2-splitauto-g4'"};

const std::vector<const char*> kSchemaTampering = {
    "CREATE VIEW v AS SELECT 1;",
    "CREATE TRIGGER t BEFORE UPDATE ON devices BEGIN SELECT 1; END;",
    "DROP INDEX best_configs_by_problem;",
    "CREATE TABLE sqlite_stat1(tbl,idx,stat);",
    "ALTER TABLE devices RENAME COLUMN name TO nom;",
    "DROP TABLE binaries; CREATE TABLE binaries (key TEXT);",
    "PRAGMA user_version=0;",
    "PRAGMA user_version=7;",
};

class Fuzzer {
 public:
  Fuzzer(std::string base_bytes, std::string work, uint64_t seed)
      : base_(std::move(base_bytes)), work_(std::move(work)), rng_(seed) {}

  // Writes one mutated file to work_ and says what was done to it.
  std::string Mutate() {
    std::error_code ec;
    for (const char* s : {"", "-wal", "-shm", "-journal"}) std::filesystem::remove(work_ + s, ec);
    switch (Pick(5)) {
      case 0: return FlipBytes();
      case 1: return Truncate();
      case 2: return TamperRow();
      case 3: return TamperSchema();
      default: return TamperRow() + " then " + FlipBytes();
    }
  }

 private:
  size_t Pick(size_t n) { return std::uniform_int_distribution<size_t>(0, n - 1)(rng_); }

  std::string FlipBytes() {
    std::string bytes = ReadOrBase();
    const size_t flips = 1 + Pick(32);
    for (size_t i = 0; i < flips; ++i) bytes[Pick(bytes.size())] = static_cast<char>(Pick(256));
    WriteBytes(work_, bytes);
    return absl::StrCat("flip ", flips, " bytes");
  }

  std::string Truncate() {
    const size_t keep = Pick(base_.size());
    WriteBytes(work_, base_.substr(0, keep));
    return absl::StrCat("truncate to ", keep);
  }

  std::string RunRaw(const std::string& sql) {
    if (!std::filesystem::exists(work_)) WriteBytes(work_, base_);
    absl::StatusOr<Db> db = Db::Open(work_);
    if (!db.ok()) return "open failed";
    (void)db->Exec("PRAGMA foreign_keys=OFF; PRAGMA ignore_check_constraints=ON;");
    absl::Status s = db->Exec(sql);
    return s.ok() ? sql : absl::StrCat(sql, " (refused: ", s.message(), ")");
  }

  std::string TamperRow() {
    const auto& [table, columns] = kColumns[Pick(kColumns.size())];
    const char* column = columns[Pick(columns.size())];
    return RunRaw(absl::StrCat("UPDATE ", table, " SET ", column, " = ", kValues[Pick(kValues.size())],
                               " WHERE rowid IN (SELECT rowid FROM ", table, " ORDER BY random() LIMIT 1);"));
  }

  std::string TamperSchema() { return RunRaw(kSchemaTampering[Pick(kSchemaTampering.size())]); }

  std::string ReadOrBase() {
    return std::filesystem::exists(work_) ? ReadBytes(work_) : base_;
  }

  const std::string base_;
  const std::string work_;
  std::mt19937_64 rng_;
};

bool MeantForBadInput(absl::StatusCode code) {
  return code == absl::StatusCode::kInvalidArgument || code == absl::StatusCode::kFailedPrecondition;
}

TEST_F(ImportFuzzTest, CorruptAndHostileFilesNeverCrashHangOrDamageTheDestination) {
  const std::string source = PathFor("source.db");
  {
    ASSERT_OK_AND_ASSIGN(auto store, Store::Open(source));
    ASSERT_OK_AND_ASSIGN(Ids ids, SeedEntities(*store));
    ASSERT_OK_AND_ASSIGN(int64_t run, store->StartRun(ids.device, {{"problems", nlohmann::json::array()}}));
    for (int i = 0; i < 30; ++i) {
      Measurement m = OkMeasurement(ids.device, ids.problem, i % 2 ? ids.variant_a : ids.variant_b, 1000 + i, 5 + i);
      if (i % 3 == 0) m.run_id = run;
      ASSERT_OK(store->RecordMeasurement(m).status());
      ASSERT_OK(store->SetBestConfig({TestDevice().fingerprint, kProblemKey, absl::StrCat("b", i), kVariantKeyA,
                                      5.0 + i, 3, 13000, 0}));
    }
    ASSERT_OK(store->PutBinary({"xxh3:one", "sm_90a", 3, 13000, 13000, "s", std::vector<uint8_t>(3000, 7), "", 0}));
  }
  const std::string base = ReadBytes(source);
  const uint64_t seed = static_cast<uint64_t>(EnvDouble("PLX_FUZZ_SEED", 20261129));
  const double budget_s = EnvDouble("PLX_FUZZ_SECONDS", 15);
  ASSERT_OK_AND_ASSIGN(auto dest, Store::Open(PathFor("dest.db")));
  ImportOptions options;
  options.time_limit_ms = 5000;
  options.rows_per_transaction = 7;
  options.check_variant_key = [](absl::string_view key) {
    return absl::EndsWith(key, "-testhang") ? absl::InvalidArgumentError("test-only") : absl::OkStatus();
  };

  Fuzzer fuzz(base, PathFor("mutant.db"), seed);
  const auto start = std::chrono::steady_clock::now();
  int iterations = 0, accepted = 0;
  while (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() < budget_s &&
         iterations < 5000) {
    const std::string what = fuzz.Mutate();
    SCOPED_TRACE(absl::StrCat("seed ", seed, " iteration ", iterations, ": ", what));
    const auto t0 = std::chrono::steady_clock::now();
    absl::StatusOr<ImportStats> stats = dest->Import(PathFor("mutant.db"), options);
    const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_LT(took, 10.0);
    if (stats.ok()) {
      ++accepted;
    } else {
      EXPECT_TRUE(MeantForBadInput(stats.status().code())) << stats.status();
    }
    if (++iterations % 100 == 0 || HasFailure()) {
      ASSERT_OK_AND_ASSIGN(VerifyReport report, dest->Verify());
      ASSERT_TRUE(report.ok);
    }
    if (HasFailure()) break;
  }
  ASSERT_OK_AND_ASSIGN(VerifyReport report, dest->Verify());
  EXPECT_TRUE(report.ok);
  std::printf("[fuzz] seed %llu: %d files in %.1f s, %d accepted\n", static_cast<unsigned long long>(seed),
              iterations, budget_s, accepted);
  EXPECT_GT(iterations, 20);
  EXPECT_GT(accepted, 0);  // some mutations are harmless: the sound path is exercised too
}

}  // namespace
}  // namespace parallax::cache::testing
