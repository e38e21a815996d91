#include "open_checked.h"

#include <spdlog/spdlog.h>
#include <sqlite3.h>

#include <array>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "parallax/cache/stmt.h"

namespace parallax::cache::internal {
namespace {

constexpr char kSqliteMagic[] = "SQLite format 3";  // 16 bytes with the terminating NUL
constexpr size_t kSqliteHeaderBytes = 100;

bool IsSpecialPath(const std::string& path) {
  return path.empty() || path == ":memory:" || path.rfind("file:", 0) == 0;
}

absl::Status NotADatabase(const std::string& path, absl::string_view why) {
  return absl::DataLossError(absl::StrCat(
      "cache file ", path, " is not a valid SQLite database (", why,
      "); refusing to open it. It was left untouched: move it aside or restore a backup"));
}

absl::Status CheckExists(const std::string& path, bool create_if_missing) {
  std::error_code ec;
  if (std::filesystem::exists(path, ec) || create_if_missing) return absl::OkStatus();
  return absl::NotFoundError(absl::StrCat("cache file ", path, " does not exist"));
}

// The header is read through sqlite's own file handle. Opening the file a second time
// (ifstream) and closing it would drop every POSIX advisory lock this process holds on it,
// including those of other Stores on other threads: the classic sqlite corruption hazard
// (another process may then checkpoint and reset the WAL under them).
absl::Status CheckHeader(Db& db) {
  std::error_code ec;
  const auto size = std::filesystem::file_size(db.path(), ec);
  if (ec || size == 0) return absl::OkStatus();  // new database: nothing to check yet
  if (size < kSqliteHeaderBytes) return NotADatabase(db.path(), "file shorter than the header");
  sqlite3_file* file = nullptr;
  int rc = sqlite3_file_control(db.handle(), "main", SQLITE_FCNTL_FILE_POINTER, &file);
  if (rc != SQLITE_OK || file == nullptr || file->pMethods == nullptr) {
    return db.Error(rc == SQLITE_OK ? SQLITE_CANTOPEN : rc, "file handle for header check");
  }
  std::array<char, sizeof(kSqliteMagic)> magic{};
  rc = file->pMethods->xRead(file, magic.data(), static_cast<int>(magic.size()), 0);
  if (rc != SQLITE_OK) return db.Error(rc, "reading the file header");
  if (std::memcmp(magic.data(), kSqliteMagic, sizeof(kSqliteMagic)) != 0) {
    return NotADatabase(db.path(), "bad file header");
  }
  return absl::OkStatus();
}

// sqlite reports damage it meets while reading as SQLITE_CORRUPT / SQLITE_NOTADB.
absl::Status AsNotADatabase(const std::string& path, const absl::Status& status) {
  return status.code() == absl::StatusCode::kDataLoss ? NotADatabase(path, status.message())
                                                      : status;
}

}  // namespace

absl::Status QuickCheck(Db& db) {
  absl::StatusOr<Stmt> stmt = db.Prepare("PRAGMA quick_check(20)");
  if (!stmt.ok()) {
    return stmt.status().code() == absl::StatusCode::kDataLoss
               ? NotADatabase(db.path(), stmt.status().message())
               : stmt.status();
  }
  std::vector<std::string> lines;
  while (true) {
    absl::StatusOr<bool> row = stmt->Step();
    if (!row.ok()) {
      if (row.status().code() == absl::StatusCode::kDataLoss) {
        return NotADatabase(db.path(), row.status().message());
      }
      return row.status();
    }
    if (!*row) break;
    lines.push_back(stmt->Text(0));
  }
  if (lines.size() == 1 && lines[0] == "ok") return absl::OkStatus();
  return NotADatabase(db.path(), absl::StrCat("quick_check: ", absl::StrJoin(lines, "; ")));
}

namespace {

struct SchemaState {
  int user_version = 0;
  int64_t schema_objects = 0;
};

// Both values in one statement, i.e. one snapshot: a concurrent opener may be committing
// the v1 migration at this very moment.
absl::StatusOr<SchemaState> ReadSchemaState(Db& db) {
  absl::StatusOr<Stmt> stmt = db.Prepare(
      "SELECT user_version, (SELECT COUNT(*) FROM sqlite_schema) FROM pragma_user_version");
  if (!stmt.ok()) return stmt.status();
  absl::StatusOr<bool> row = stmt->Step();
  if (!row.ok()) return row.status();
  if (!*row) return absl::InternalError(absl::StrCat("cache ", db.path(), ": no user_version"));
  return SchemaState{static_cast<int>(stmt->Int(0)), stmt->Int(1)};
}

}  // namespace

absl::StatusOr<CheckedDb> OpenChecked(const std::string& path, const DbOptions& options,
                                      bool check_integrity, int max_known_version) {
  const bool special = IsSpecialPath(path);
  if (!special) {
    if (absl::Status s = CheckExists(path, options.create_if_missing && !options.read_only);
        !s.ok()) {
      return s;
    }
  }
  // Db::Open reads nothing that it could write back: at worst a foreign file fails here.
  absl::StatusOr<Db> db = Db::Open(path, options);
  if (!db.ok()) return AsNotADatabase(path, db.status());
  if (!special) {
    if (absl::Status s = CheckHeader(*db); !s.ok()) return s;
  }
  if (check_integrity) {
    if (absl::Status s = QuickCheck(*db); !s.ok()) return s;
  }
  absl::StatusOr<SchemaState> state = ReadSchemaState(*db);
  if (!state.ok()) return AsNotADatabase(path, state.status());
  const int version = state->user_version;
  const int64_t schema_objects = state->schema_objects;
  if (version == 0 && schema_objects > 0) {
    // Version 0 with tables is somebody else's database: migrating would graft the cache
    // schema onto it.
    return absl::FailedPreconditionError(absl::StrCat(
        "cache file ", path, " is an SQLite database but not a Parallax cache (it has ",
        schema_objects, " schema objects and no schema version); refusing to modify it"));
  }
  if (version > max_known_version) {
    return absl::FailedPreconditionError(
        absl::StrCat("cache file ", path, " has schema version ", version,
                     " but this build only knows versions up to ", max_known_version,
                     "; it was written by a newer Parallax. Upgrade, or use another cache file"));
  }
  return CheckedDb{std::move(*db), version};
}

absl::Status EnableWal(Db& db) {
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(db.busy_timeout_ms());
  while (true) {
    absl::StatusOr<Stmt> stmt = db.Prepare("PRAGMA journal_mode=WAL");
    absl::Status status = stmt.status();
    if (stmt.ok()) {
      absl::StatusOr<bool> row = stmt->Step();
      status = row.status();
      if (row.ok()) {
        std::string mode = *row ? stmt->Text(0) : std::string();
        if (mode != "wal" && mode != "memory") {
          spdlog::warn(
              "parallax cache {}: journal_mode is '{}', not WAL; concurrent writers "
              "will contend harder",
              db.path(), mode);
        }
        return absl::OkStatus();
      }
    }
    if (status.code() != absl::StatusCode::kUnavailable ||
        std::chrono::steady_clock::now() >= deadline) {
      return status;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

}  // namespace parallax::cache::internal
