#include "parallax/cache/txn.h"

#include <spdlog/spdlog.h>
#include <sqlite3.h>

#include <utility>

#include "parallax/cache/db.h"

namespace parallax::cache {

absl::StatusOr<Txn> Txn::Begin(Db& db) {
  if (absl::Status s = db.Exec("BEGIN IMMEDIATE;"); !s.ok()) return s;
  return Txn(&db);
}

absl::StatusOr<Txn> Txn::BeginRead(Db& db) {
  if (absl::Status s = db.Exec("BEGIN DEFERRED;"); !s.ok()) return s;
  return Txn(&db);
}

Txn::Txn(Txn&& other) noexcept : db_(std::exchange(other.db_, nullptr)) {}

Txn::~Txn() {
  if (db_ == nullptr) return;
  if (absl::Status s = Rollback(); !s.ok()) {
    // Nothing to return from a destructor; sqlite rolls back on close anyway.
    spdlog::warn("parallax cache: rollback failed: {}", s.ToString());
  }
}

absl::Status Txn::Commit() {
  if (db_ == nullptr) return absl::FailedPreconditionError("transaction is not active");
  absl::Status s = db_->Exec("COMMIT;");
  // A failed COMMIT leaves the transaction open; the destructor's ROLLBACK then ends it.
  if (s.ok()) db_ = nullptr;
  return s;
}

absl::Status Txn::Rollback() {
  if (db_ == nullptr) return absl::OkStatus();
  Db* db = std::exchange(db_, nullptr);
  // Some errors (SQLITE_FULL, SQLITE_IOERR, ...) make sqlite roll back on its own; a second
  // ROLLBACK would then fail with "no transaction is active".
  if (sqlite3_get_autocommit(db->handle()) != 0) return absl::OkStatus();
  return db->Exec("ROLLBACK;");
}

}  // namespace parallax::cache
