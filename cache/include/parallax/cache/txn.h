#pragma once
// Txn: a transaction that rolls back unless Commit() succeeded.

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace parallax::cache {

class Db;

class Txn {
 public:
  // BEGIN IMMEDIATE: takes the write lock up front so the busy handler applies while
  // waiting for it; a deferred transaction that later upgrades to a writer can fail with
  // SQLITE_BUSY_SNAPSHOT in WAL mode without waiting.
  static absl::StatusOr<Txn> Begin(Db& db);
  // BEGIN DEFERRED: a consistent read snapshot across several statements.
  static absl::StatusOr<Txn> BeginRead(Db& db);

  Txn(Txn&& other) noexcept;
  Txn& operator=(Txn&& other) = delete;
  Txn(const Txn&) = delete;
  Txn& operator=(const Txn&) = delete;
  ~Txn();  // ROLLBACK when still active.

  absl::Status Commit();
  absl::Status Rollback();
  bool active() const { return db_ != nullptr; }

 private:
  explicit Txn(Db* db) : db_(db) {}
  Db* db_ = nullptr;
};

}  // namespace parallax::cache
