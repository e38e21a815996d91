#pragma once
// Helpers shared by the store_*.cc files; callers hold Store::mu_.

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "parallax/cache/db.h"
#include "parallax/cache/stmt.h"

namespace parallax::cache::internal {

// NotFound (naming the fingerprint) when no such device is stored.
absl::StatusOr<int64_t> FindDeviceId(Db& db, absl::string_view fingerprint);

// Runs sql with args bound and returns the first column of its first row (an id from
// RETURNING or a lookup). NotFound when there is no row.
template <typename... Args>
absl::StatusOr<int64_t> QueryId(Db& db, absl::string_view sql, const Args&... args) {
  absl::StatusOr<Stmt> stmt = db.Prepare(sql);
  if (!stmt.ok()) return stmt.status();
  if (absl::Status s = stmt->BindAll(args...); !s.ok()) return s;
  absl::StatusOr<bool> row = stmt->Step();
  if (!row.ok()) return row.status();
  if (!*row) return absl::NotFoundError("no row");
  const int64_t id = stmt->Int(0);
  // Step to the end so a RETURNING write has fully completed.
  if (absl::Status s = stmt->Run(); !s.ok()) return s;
  return id;
}

// Runs a statement that returns no rows; returns sqlite3_changes().
template <typename... Args>
absl::StatusOr<int> Execute(Db& db, absl::string_view sql, const Args&... args) {
  absl::StatusOr<Stmt> stmt = db.Prepare(sql);
  if (!stmt.ok()) return stmt.status();
  if (absl::Status s = stmt->BindAll(args...); !s.ok()) return s;
  if (absl::Status s = stmt->Run(); !s.ok()) return s;
  return db.changes();
}

}  // namespace parallax::cache::internal
