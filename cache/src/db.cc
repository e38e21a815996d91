#include "parallax/cache/db.h"

#include <sqlite3.h>

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "parallax/cache/device_key.h"
#include "parallax/cache/stmt.h"
#include "sqlite_error.h"
#include "untrusted.h"

namespace parallax::cache {
namespace {

// parallax_device_key(fingerprint): DeviceKey in SQL, for lookups that must find rows filed
// under an older fingerprint form and for the v3 migration. Pure and harmless, so it may
// also run on untrusted files.
void DeviceKeySql(sqlite3_context* ctx, int argc, sqlite3_value** argv) {
  if (argc != 1 || sqlite3_value_type(argv[0]) != SQLITE_TEXT) {
    sqlite3_result_null(ctx);
    return;
  }
  const auto* text = reinterpret_cast<const char*>(sqlite3_value_text(argv[0]));
  const std::string key = DeviceKey(absl::string_view(text, sqlite3_value_bytes(argv[0])));
  sqlite3_result_text(ctx, key.data(), static_cast<int>(key.size()), SQLITE_TRANSIENT);
}

}  // namespace

absl::StatusOr<Db> Db::Open(const std::string& path, const DbOptions& options) {
  int flags = SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_URI;
  if (options.read_only) {
    flags |= SQLITE_OPEN_READONLY;
  } else {
    flags |= SQLITE_OPEN_READWRITE;
    if (options.create_if_missing) flags |= SQLITE_OPEN_CREATE;
  }
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &raw, flags, nullptr);
  if (rc != SQLITE_OK) {
    absl::Status status = internal::SqliteStatus(
        rc, raw != nullptr ? sqlite3_errmsg(raw) : sqlite3_errstr(rc), path, "open");
    sqlite3_close_v2(raw);
    return status;
  }
  sqlite3_extended_result_codes(raw, 1);
  Db db(raw, path, options.busy_timeout_ms);
  rc = sqlite3_create_function_v2(raw, "parallax_device_key", 1,
                                  SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_INNOCUOUS, nullptr,
                                  &DeviceKeySql, nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) return db.Error(rc, "registering parallax_device_key");
  if (options.untrusted) {
    if (absl::Status s = internal::HardenForUntrustedFile(db); !s.ok()) return s;
  }
  rc = sqlite3_busy_timeout(raw, options.busy_timeout_ms);
  if (rc != SQLITE_OK) return db.Error(rc, "busy_timeout");
  // Connection-level only (nothing is written to the file): foreign keys are off by
  // default in sqlite, and NORMAL sync is durable against process crashes under WAL.
  if (absl::Status s = db.Exec("PRAGMA foreign_keys=ON;"); !s.ok()) return s;
  if (!options.read_only) {
    if (absl::Status s = db.Exec("PRAGMA synchronous=NORMAL;"); !s.ok()) return s;
  }
  return db;
}

Db::Db(sqlite3* db, std::string path, int busy_timeout_ms)
    : db_(db), path_(std::move(path)), busy_timeout_ms_(busy_timeout_ms) {}

Db::Db(Db&& other) noexcept
    : db_(std::exchange(other.db_, nullptr)),
      path_(std::move(other.path_)),
      busy_timeout_ms_(other.busy_timeout_ms_) {}

Db& Db::operator=(Db&& other) noexcept {
  if (this != &other) {
    Close();
    db_ = std::exchange(other.db_, nullptr);
    path_ = std::move(other.path_);
    busy_timeout_ms_ = other.busy_timeout_ms_;
  }
  return *this;
}

Db::~Db() { Close(); }

void Db::Close() {
  // close_v2 defers the close until outstanding statements are finalized, so a stray Stmt
  // outliving its Db cannot leave a dangling connection.
  if (db_ != nullptr) sqlite3_close_v2(db_);
  db_ = nullptr;
}

absl::Status Db::Exec(absl::string_view sql) {
  std::string text(sql);
  char* message = nullptr;
  int rc = sqlite3_exec(db_, text.c_str(), nullptr, nullptr, &message);
  if (rc == SQLITE_OK) return absl::OkStatus();
  std::string detail = message != nullptr ? message : sqlite3_errmsg(db_);
  sqlite3_free(message);
  return internal::SqliteStatus(rc, detail, path_, text.substr(0, 80));
}

absl::StatusOr<Stmt> Db::Prepare(absl::string_view sql) {
  sqlite3_stmt* stmt = nullptr;
  int rc = sqlite3_prepare_v2(db_, sql.data(), static_cast<int>(sql.size()), &stmt, nullptr);
  if (rc != SQLITE_OK) {
    return Error(rc, absl::StrCat("prepare \"", sql.substr(0, 80), "\""));
  }
  return Stmt(stmt);
}

absl::StatusOr<int64_t> Db::QueryInt(absl::string_view sql) {
  absl::StatusOr<Stmt> stmt = Prepare(sql);
  if (!stmt.ok()) return stmt.status();
  absl::StatusOr<bool> row = stmt->Step();
  if (!row.ok()) return row.status();
  if (!*row) {
    return absl::InternalError(
        absl::StrCat("sqlite cache ", path_, ": no row from \"", sql.substr(0, 80), "\""));
  }
  return stmt->Int(0);
}

absl::StatusOr<int> Db::UserVersion() {
  absl::StatusOr<int64_t> v = QueryInt("PRAGMA user_version");
  if (!v.ok()) return v.status();
  return static_cast<int>(*v);
}

absl::Status Db::SetUserVersion(int version) {
  // PRAGMA arguments cannot be bound; version is an int so formatting is safe.
  return Exec(absl::StrCat("PRAGMA user_version=", version, ";"));
}

absl::Status Db::Error(int rc, absl::string_view context) const {
  return internal::SqliteStatus(rc, db_ != nullptr ? sqlite3_errmsg(db_) : sqlite3_errstr(rc),
                                path_, context);
}

int64_t Db::last_insert_rowid() const { return sqlite3_last_insert_rowid(db_); }
int Db::changes() const { return sqlite3_changes(db_); }

}  // namespace parallax::cache
