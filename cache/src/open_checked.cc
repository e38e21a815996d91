#include "open_checked.h"

#include <sqlite3.h>

#include <array>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>
#include <vector>

#include <spdlog/spdlog.h>

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

// Checked by hand before sqlite sees the file so a foreign file gets a clear message.
absl::Status CheckHeader(const std::string& path, bool create_if_missing) {
  std::error_code ec;
  const bool exists = std::filesystem::exists(path, ec);
  if (!exists) {
    if (create_if_missing) return absl::OkStatus();
    return absl::NotFoundError(absl::StrCat("cache file ", path, " does not exist"));
  }
  const auto size = std::filesystem::file_size(path, ec);
  if (ec) {
    return absl::PermissionDeniedError(
        absl::StrCat("cache file ", path, ": cannot stat: ", ec.message()));
  }
  if (size == 0) return absl::OkStatus();  // sqlite treats an empty file as a new database
  if (size < kSqliteHeaderBytes) return NotADatabase(path, "file shorter than the header");
  std::ifstream in(path, std::ios::binary);
  std::array<char, sizeof(kSqliteMagic)> magic{};
  if (!in.read(magic.data(), magic.size())) {
    return absl::PermissionDeniedError(absl::StrCat("cache file ", path, ": cannot read"));
  }
  if (std::memcmp(magic.data(), kSqliteMagic, sizeof(kSqliteMagic)) != 0) {
    return NotADatabase(path, "bad file header");
  }
  return absl::OkStatus();
}

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
  return NotADatabase(db.path(),
                      absl::StrCat("quick_check: ", absl::StrJoin(lines, "; ")));
}

}  // namespace

absl::StatusOr<CheckedDb> OpenChecked(const std::string& path, const DbOptions& options,
                                      bool check_integrity, int max_known_version) {
  if (!IsSpecialPath(path)) {
    if (absl::Status s = CheckHeader(path, options.create_if_missing && !options.read_only);
        !s.ok()) {
      return s;
    }
  }
  absl::StatusOr<Db> db = Db::Open(path, options);
  if (!db.ok()) return db.status();
  if (check_integrity) {
    if (absl::Status s = QuickCheck(*db); !s.ok()) return s;
  }
  absl::StatusOr<int> version = db->UserVersion();
  if (!version.ok()) {
    if (version.status().code() == absl::StatusCode::kDataLoss) {
      return NotADatabase(path, version.status().message());
    }
    return version.status();
  }
  if (*version > max_known_version) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cache file ", path, " has schema version ", *version,
        " but this build only knows versions up to ", max_known_version,
        "; it was written by a newer Parallax. Upgrade, or use another cache file"));
  }
  return CheckedDb{std::move(*db), *version};
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
          spdlog::warn("parallax cache {}: journal_mode is '{}', not WAL; concurrent writers "
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
