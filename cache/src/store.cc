#include "parallax/cache/store.h"

#include <sqlite3.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <utility>

#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "import_source.h"
#include "open_checked.h"
#include "parallax/cache/schema.h"

namespace parallax::cache {
namespace {

// An in-memory database holding `src`'s content (the sqlite backup API: reads src only).
absl::StatusOr<Db> CopyToMemory(Db& src) {
  absl::StatusOr<Db> mem = Db::Open(":memory:");
  if (!mem.ok()) return mem.status();
  sqlite3_backup* b = sqlite3_backup_init(mem->handle(), "main", src.handle(), "main");
  if (b == nullptr) return mem->Error(sqlite3_errcode(mem->handle()), "copying into memory");
  int rc = sqlite3_backup_step(b, -1);
  const int finish = sqlite3_backup_finish(b);
  if (rc != SQLITE_DONE) return src.Error(rc, "copying into memory");
  if (finish != SQLITE_OK) return mem->Error(finish, "copying into memory");
  return mem;
}

// "file:<path>?immutable=1", the path percent-encoded where a URI needs it.
std::string ImmutableUri(const std::string& path) {
  std::string uri = "file:";
  for (unsigned char c : path) {
    if (c == '%' || c == '?' || c == '#' || c < 0x20 || c >= 0x7f) {
      static constexpr char kHex[] = "0123456789ABCDEF";
      uri += '%';
      uri += kHex[c >> 4];
      uri += kHex[c & 15];
    } else {
      uri += static_cast<char>(c);
    }
  }
  return uri + "?immutable=1";
}

}  // namespace

absl::StatusOr<std::unique_ptr<Store>> Store::Open(const std::string& path,
                                                   const StoreOptions& options) {
  absl::StatusOr<std::vector<Migration>> plan = MigrationPlan(options.extra_migrations);
  if (!plan.ok()) return plan.status();
  if (options.read_only) return OpenReadOnly(path, options, *plan);
  DbOptions db_options;
  db_options.busy_timeout_ms = options.busy_timeout_ms;
  absl::StatusOr<internal::CheckedDb> checked = internal::OpenChecked(
      path, db_options, options.check_integrity_on_open, plan->back().version);
  if (!checked.ok()) return checked.status();
  // Only now, with the file known to be sound and understood, may anything be written.
  if (absl::Status s = internal::EnableWal(checked->db); !s.ok()) return s;
  absl::StatusOr<int> version = ApplyMigrations(checked->db, *plan);
  if (!version.ok()) return version.status();
  if (int n = internal::RemoveStaleImportCopies(path); n > 0) {
    spdlog::info("parallax cache {}: removed {} leftover import copies of crashed processes", path, n);
  }
  return std::unique_ptr<Store>(new Store(std::move(checked->db), path, options, *version));
}

absl::StatusOr<std::unique_ptr<Store>> Store::OpenReadOnly(const std::string& path,
                                                           const StoreOptions& options,
                                                           const std::vector<Migration>& plan) {
  DbOptions db_options;
  db_options.busy_timeout_ms = options.busy_timeout_ms;
  db_options.read_only = true;
  db_options.create_if_missing = false;
  absl::StatusOr<internal::CheckedDb> checked = internal::OpenChecked(
      path, db_options, options.check_integrity_on_open, plan.back().version);
  std::error_code ec;
  if (!checked.ok() &&
      (checked.status().code() == absl::StatusCode::kPermissionDenied ||
       checked.status().code() == absl::StatusCode::kNotFound) &&
      path.rfind("file:", 0) != 0 && path != ":memory:" && std::filesystem::exists(path, ec)) {
    // A WAL-mode file whose -wal/-shm companions this process cannot create (a read-only
    // directory or mount, another user's file): no writer can be at work there either, so
    // read the file itself as immutable (no locks, no companions).
    const std::string uri = ImmutableUri(path);
    checked = internal::OpenChecked(uri, db_options, options.check_integrity_on_open, plan.back().version);
    if (!checked.ok())  // name the file as the caller did
      return absl::Status(checked.status().code(),
                          absl::StrReplaceAll(checked.status().message(), {{uri, path}}));
  }
  if (!checked.ok()) return checked.status();
  const int file_version = checked->user_version;
  Db db = std::move(checked->db);
  const bool as_is = std::all_of(plan.begin(), plan.end(), [&](const Migration& m) {
    return m.version <= file_version || m.reads_unchanged;
  });
  if (file_version == 0 || !as_is) {
    // Nothing the reader's queries can run on: an empty file reads as an empty database, an
    // older layout through a migrated copy. Either way the file stays as it was.
    absl::StatusOr<Db> mem = file_version == 0 ? Db::Open(":memory:") : CopyToMemory(db);
    if (!mem.ok()) return mem.status();
    absl::StatusOr<int> v = ApplyMigrations(*mem, plan);
    if (!v.ok()) return v.status();
    db = std::move(*mem);
  }
  if (absl::Status s = db.Exec("PRAGMA query_only=ON;"); !s.ok()) return s;
  return std::unique_ptr<Store>(new Store(std::move(db), path, options, file_version));
}

Store::Store(Db db, std::string path, StoreOptions options, int file_version)
    : db_(std::move(db)), path_(std::move(path)), options_(std::move(options)), file_version_(file_version) {}

Store::~Store() = default;

absl::StatusOr<int> Store::SchemaVersion() {
  if (options_.read_only) return file_version_;
  std::lock_guard lock(mu_);
  return db_.UserVersion();
}

}  // namespace parallax::cache
