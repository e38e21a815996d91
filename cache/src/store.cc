#include "parallax/cache/store.h"

#include <utility>

#include <spdlog/spdlog.h>

#include "import_source.h"
#include "open_checked.h"
#include "parallax/cache/schema.h"

namespace parallax::cache {

absl::StatusOr<std::unique_ptr<Store>> Store::Open(const std::string& path,
                                                   const StoreOptions& options) {
  absl::StatusOr<std::vector<Migration>> plan = MigrationPlan(options.extra_migrations);
  if (!plan.ok()) return plan.status();
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
  return std::unique_ptr<Store>(new Store(std::move(checked->db), path, options));
}

Store::Store(Db db, std::string path, StoreOptions options)
    : db_(std::move(db)), path_(std::move(path)), options_(std::move(options)) {}

Store::~Store() = default;

absl::StatusOr<int> Store::SchemaVersion() {
  std::lock_guard lock(mu_);
  return db_.UserVersion();
}

}  // namespace parallax::cache
