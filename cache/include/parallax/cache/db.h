#pragma once
// Db: RAII owner of one sqlite3 connection.

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

struct sqlite3;

namespace parallax::cache {

class Stmt;

struct DbOptions {
  // How long a writer waits for another connection's lock before SQLITE_BUSY surfaces.
  int busy_timeout_ms = 5000;
  bool read_only = false;
  bool create_if_missing = true;
  // A file from somebody else (an import): SQLite's defensive settings, no triggers or views
  // run, nothing in its schema trusted, bounded string/blob sizes.
  bool untrusted = false;
};

// One connection. Move-only and not thread-safe by itself: Store serialises access.
// Open() applies only connection-level settings (busy_timeout, foreign_keys,
// synchronous=NORMAL); nothing it does writes to the file, so a file can be inspected
// (integrity, schema version) before anything persistent such as journal_mode is set.
class Db {
 public:
  static absl::StatusOr<Db> Open(const std::string& path, const DbOptions& options = {});

  Db() = default;
  Db(Db&& other) noexcept;
  Db& operator=(Db&& other) noexcept;
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;
  ~Db();

  // Runs one or more statements that return no rows of interest.
  absl::Status Exec(absl::string_view sql);
  absl::StatusOr<Stmt> Prepare(absl::string_view sql);
  // First column of the first row as an integer (PRAGMA user_version, COUNT(*)).
  absl::StatusOr<int64_t> QueryInt(absl::string_view sql);

  absl::StatusOr<int> UserVersion();
  absl::Status SetUserVersion(int version);

  // Builds a Status from a sqlite result code, carrying sqlite's message and the path.
  absl::Status Error(int rc, absl::string_view context) const;

  int64_t last_insert_rowid() const;
  int changes() const;
  sqlite3* handle() const { return db_; }
  const std::string& path() const { return path_; }
  int busy_timeout_ms() const { return busy_timeout_ms_; }
  bool is_open() const { return db_ != nullptr; }

 private:
  Db(sqlite3* db, std::string path, int busy_timeout_ms);
  void Close();

  sqlite3* db_ = nullptr;
  std::string path_;
  int busy_timeout_ms_ = 0;
};

}  // namespace parallax::cache
