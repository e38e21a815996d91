#include "import_source.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <map>
#include <random>
#include <tuple>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "open_checked.h"
#include "parallax/cache/stmt.h"
#include "store_internal.h"

namespace parallax::cache::internal {
namespace {

constexpr absl::string_view kCopyTag = ".import-";

// (type, name) -> (table, sql) of every schema object but sqlite's own.
using SchemaObjects = std::map<std::pair<std::string, std::string>, std::pair<std::string, std::string>>;

absl::StatusOr<SchemaObjects> ReadSchemaObjects(Db& db) {
  absl::StatusOr<Stmt> stmt =
      db.Prepare("SELECT type, name, tbl_name, sql, typeof(sql) FROM sqlite_schema");
  if (!stmt.ok()) return stmt.status();
  SchemaObjects objects;
  while (true) {
    absl::StatusOr<bool> row = stmt->Step();
    if (!row.ok()) return row.status();
    if (!*row) return objects;
    objects[{stmt->Text(0), stmt->Text(1)}] = {stmt->Text(2),
                                               stmt->Text(4) == "null" ? "" : stmt->Text(3)};
  }
}

// What this build's migrations create up to `version`, built in memory: the reference the
// file's schema must equal, object by object and text by text.
absl::StatusOr<SchemaObjects> ExpectedSchema(const std::vector<Migration>& plan, int version) {
  absl::StatusOr<Db> mem = Db::Open(":memory:");
  if (!mem.ok()) return mem.status();
  for (const Migration& step : plan) {
    if (step.version > version) break;
    if (absl::Status s = step.apply(*mem); !s.ok()) return s;
  }
  return ReadSchemaObjects(*mem);
}

absl::Status BadFile(const std::string& path, absl::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat("import file ", path, " is not a Parallax cache export: ", why));
}

absl::Status CheckSchema(Db& db, const std::vector<Migration>& plan, int version) {
  absl::StatusOr<SchemaObjects> expected = ExpectedSchema(plan, version);
  if (!expected.ok()) return expected.status();
  absl::StatusOr<SchemaObjects> actual = ReadSchemaObjects(db);
  if (!actual.ok()) return actual.status();
  for (const auto& [id, body] : *actual) {
    auto it = expected->find(id);
    if (it == expected->end()) {
      return BadFile(db.path(), absl::StrCat("unexpected ", id.first, " '", id.second.substr(0, 64),
                                             "' in a schema v", version, " file"));
    }
    if (it->second != body) {
      return BadFile(db.path(), absl::StrCat(id.first, " '", id.second, "' differs from schema v",
                                             version));
    }
  }
  for (const auto& [id, body] : *expected) {
    if (!actual->count(id)) {
      return BadFile(db.path(), absl::StrCat(id.first, " '", id.second, "' is missing"));
    }
  }
  return absl::OkStatus();
}

bool ProcessAlive(int64_t pid) {
  if (pid <= 0) return false;
  return kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM;
}

}  // namespace

absl::Status SourceFault(const std::string& path, const absl::Status& s) {
  switch (s.code()) {
    case absl::StatusCode::kOk:
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kFailedPrecondition:  // a newer schema: upgrade, not a bad file
    case absl::StatusCode::kPermissionDenied:
    case absl::StatusCode::kUnavailable:  // somebody holds the file's lock
    case absl::StatusCode::kCancelled:
    case absl::StatusCode::kDeadlineExceeded:
      return s;
    default:  // damage, size limits, "unsupported file format", ...: the file's fault
      return BadFile(path, s.message());
  }
}

TempDbFile::~TempDbFile() {
  std::error_code ec;
  for (const char* suffix : {"", "-wal", "-shm", "-journal"}) {
    std::filesystem::remove(path_ + suffix, ec);
  }
}

std::string ImportCopyPath(const std::string& destination) {
  std::random_device rd;
  return absl::StrCat(destination, kCopyTag, getpid(), "-", rd(), ".tmp");
}

int RemoveStaleImportCopies(const std::string& destination) {
  if (destination.empty() || destination == ":memory:" || absl::StartsWith(destination, "file:")) {
    return 0;
  }
  const std::filesystem::path dest(destination);
  const std::string prefix = absl::StrCat(dest.filename().string(), kCopyTag);
  std::error_code ec;
  const std::filesystem::path dir = dest.has_parent_path() ? dest.parent_path() : ".";
  int removed = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (!absl::StartsWith(name, prefix)) continue;
    // <db>.import-<pid>-<random>.tmp, possibly with a sqlite companion suffix.
    std::vector<absl::string_view> parts = absl::StrSplit(name.substr(prefix.size()), '-');
    int64_t pid = 0;
    if (parts.size() < 2 || !absl::SimpleAtoi(parts[0], &pid) || ProcessAlive(pid)) continue;
    std::error_code rm;
    removed += std::filesystem::remove(entry.path(), rm) ? 1 : 0;
  }
  return removed;
}

absl::StatusOr<Db> OpenImportSource(const std::string& path, const std::vector<Migration>& plan,
                                    int busy_timeout_ms, const ImportControl& control,
                                    const TempDbFile& copy) {
  DbOptions options;
  options.busy_timeout_ms = busy_timeout_ms;
  options.read_only = true;
  options.create_if_missing = false;
  options.untrusted = true;
  // Integrity is checked below, once the time limit and cancel apply to the connection.
  absl::StatusOr<CheckedDb> checked =
      OpenChecked(path, options, /*check_integrity=*/false, plan.back().version);
  if (!checked.ok()) return SourceFault(path, checked.status());
  Db source = std::move(checked->db);
  const int version = checked->user_version;
  control.Attach(source);
  if (absl::Status s = CheckSchema(source, plan, version); !s.ok()) {
    return control.Explain(SourceFault(path, s));
  }
  if (absl::Status s = QuickCheck(source); !s.ok()) return control.Explain(SourceFault(path, s));
  if (version == plan.back().version) return source;

  // Older schema: VACUUM INTO works on a read-only connection and copies rows, not code
  // (the schema was just shown to be ours), so the copy can be migrated like any cache.
  if (absl::StatusOr<int> s = Execute(source, "VACUUM INTO ?", copy.path()); !s.ok()) {
    return control.Explain(SourceFault(path, s.status()));
  }
  ImportControl::Detach(source);
  DbOptions copy_options;
  copy_options.busy_timeout_ms = busy_timeout_ms;
  copy_options.untrusted = true;
  absl::StatusOr<Db> migrated = Db::Open(copy.path(), copy_options);
  if (!migrated.ok()) return migrated.status();
  control.Attach(*migrated);
  if (absl::StatusOr<int> v = ApplyMigrations(*migrated, plan); !v.ok()) {
    return control.Explain(v.status());
  }
  return migrated;
}

}  // namespace parallax::cache::internal
