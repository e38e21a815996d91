// Store: Verify, a full integrity report.
#include "absl/strings/str_cat.h"
#include "parallax/cache/store.h"
#include "parallax/cache/txn.h"
#include "store_internal.h"

namespace parallax::cache {
namespace {

constexpr const char* kTables[] = {"devices",      "problems",     "variants", "tuning_runs",
                                   "measurements", "best_configs", "binaries"};

}  // namespace

absl::StatusOr<VerifyReport> Store::Verify() {
  std::lock_guard lock(mu_);
  VerifyReport report;
  // Damage found by sqlite while reading is reported in the report, not as an error, so a
  // caller always gets the details.
  {
    absl::StatusOr<Stmt> stmt = db_.Prepare("PRAGMA integrity_check(100)");
    if (!stmt.ok()) return stmt.status();
    while (true) {
      absl::StatusOr<bool> row = stmt->Step();
      if (!row.ok()) {
        if (row.status().code() != absl::StatusCode::kDataLoss) return row.status();
        report.integrity_errors.emplace_back(row.status().message());
        break;
      }
      if (!*row) break;
      std::string line = stmt->Text(0);
      if (line != "ok") report.integrity_errors.push_back(std::move(line));
    }
  }
  {
    absl::StatusOr<Stmt> stmt = db_.Prepare("PRAGMA foreign_key_check");
    if (!stmt.ok()) return stmt.status();
    while (true) {
      absl::StatusOr<bool> row = stmt->Step();
      if (!row.ok()) return row.status();
      if (!*row) break;
      report.foreign_key_errors.push_back(
          absl::StrCat(stmt->Text(0), " rowid ", stmt->Int(1), " -> ", stmt->Text(2)));
    }
  }
  // One read transaction so the counts are a single consistent snapshot.
  absl::StatusOr<Txn> txn = Txn::BeginRead(db_);
  if (!txn.ok()) return txn.status();
  absl::StatusOr<int> version = db_.UserVersion();
  if (!version.ok()) return version.status();
  report.schema_version = *version;
  for (const char* table : kTables) {
    absl::StatusOr<int64_t> count = db_.QueryInt(absl::StrCat("SELECT COUNT(*) FROM ", table));
    if (!count.ok()) return count.status();
    report.row_counts[table] = *count;
  }
  if (absl::Status s = txn->Commit(); !s.ok()) return s;
  report.ok = report.integrity_errors.empty() && report.foreign_key_errors.empty();
  return report;
}

}  // namespace parallax::cache
