#pragma once
// Opening a cache file without ever damaging it: checks come before anything is written.

#include <string>

#include "absl/status/statusor.h"
#include "parallax/cache/db.h"

namespace parallax::cache::internal {

struct CheckedDb {
  Db db;
  int user_version = 0;
};

// Refuses, with the file left byte-for-byte untouched:
//  - a non-empty file without the SQLite header, or one sqlite reports as damaged by
//    PRAGMA quick_check (when check_integrity): DataLoss naming the file;
//  - a schema newer than max_known_version, or a foreign database (tables but
//    user_version 0): FailedPrecondition.
// A missing or empty file is a new database (unless options forbid creating it).
absl::StatusOr<CheckedDb> OpenChecked(const std::string& path, const DbOptions& options,
                                      bool check_integrity, int max_known_version);

// PRAGMA quick_check: DataLoss naming the file unless sqlite reports it sound.
absl::Status QuickCheck(Db& db);

// PRAGMA journal_mode=WAL, retried while another opener holds the lock (changing the mode
// does not always go through the busy handler).
absl::Status EnableWal(Db& db);

}  // namespace parallax::cache::internal
