// Store: Import, merging another cache file into this one (rules documented in store.h).
#include <spdlog/spdlog.h>

#include <filesystem>
#include <random>

#include "absl/strings/str_cat.h"
#include "import_steps.h"
#include "open_checked.h"
#include "parallax/cache/json.h"
#include "parallax/cache/schema.h"
#include "parallax/cache/store.h"
#include "parallax/cache/txn.h"
#include "store_internal.h"

namespace parallax::cache {
namespace {

// Removes a temporary file and its sqlite companions when it goes out of scope.
class TempDbFile {
 public:
  explicit TempDbFile(std::string path) : path_(std::move(path)) {}
  ~TempDbFile() {
    std::error_code ec;
    for (const char* suffix : {"", "-wal", "-shm", "-journal"}) {
      std::filesystem::remove(path_ + suffix, ec);
    }
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// An older-schema source is copied (VACUUM INTO works on a read-only connection) and the
// copy migrated, so the user's file is never written.
absl::StatusOr<Db> MigratedCopy(Db& source, const std::vector<Migration>& plan,
                                const TempDbFile& temp) {
  if (absl::StatusOr<int> s = internal::Execute(source, "VACUUM INTO ?", temp.path()); !s.ok()) {
    return s.status();
  }
  DbOptions options;
  options.busy_timeout_ms = source.busy_timeout_ms();
  absl::StatusOr<Db> copy = Db::Open(temp.path(), options);
  if (!copy.ok()) return copy.status();
  absl::StatusOr<int> version = ApplyMigrations(*copy, plan);
  if (!version.ok()) return version.status();
  return copy;
}

std::string TempPathNextTo(const std::string& path) {
  std::random_device rd;
  return absl::StrCat(path, ".import-", rd(), ".tmp");
}

}  // namespace

absl::StatusOr<ImportStats> Store::Import(const std::string& path) {
  absl::StatusOr<std::vector<Migration>> plan = MigrationPlan(options_.extra_migrations);
  if (!plan.ok()) return plan.status();
  DbOptions source_options;
  source_options.busy_timeout_ms = options_.busy_timeout_ms;
  source_options.read_only = true;
  source_options.create_if_missing = false;
  absl::StatusOr<internal::CheckedDb> checked =
      internal::OpenChecked(path, source_options, /*check_integrity=*/true, plan->back().version);
  if (!checked.ok()) return checked.status();
  TempDbFile temp(TempPathNextTo(path_));  // declared first: outlives the connection to it
  Db source = std::move(checked->db);
  if (checked->user_version < plan->back().version) {
    absl::StatusOr<Db> copy = MigratedCopy(source, *plan, temp);
    if (!copy.ok()) return copy.status();
    source = std::move(*copy);
  }

  std::lock_guard lock(mu_);
  ImportStats stats;
  internal::EntityMaps maps;
  absl::StatusOr<Txn> read = Txn::BeginRead(source);  // one consistent source snapshot
  if (!read.ok()) return read.status();
  absl::StatusOr<Txn> write = Txn::Begin(db_);  // all or nothing
  if (!write.ok()) return write.status();
  absl::Status s = internal::ImportDevices(source, db_, maps.devices, stats.devices);
  if (s.ok()) s = internal::ImportProblems(source, db_, maps.problems, stats.problems);
  if (s.ok()) s = internal::ImportVariants(source, db_, maps.variants, stats.variants);
  if (s.ok()) s = internal::ImportRuns(source, db_, maps.devices, maps.runs, stats.runs);
  if (s.ok()) s = internal::ImportMeasurements(source, db_, maps, stats.measurements);
  if (s.ok()) s = internal::ImportBestConfigs(source, db_, maps.devices, stats.best_configs);
  if (s.ok()) s = internal::ImportBinaries(source, db_, stats.binaries);
  if (s.ok()) s = write->Commit();
  if (!s.ok()) {
    return absl::Status(s.code(), absl::StrCat("import of ", path, " into ", path_,
                                               " failed (nothing was merged): ", s.message()));
  }
  spdlog::info("parallax cache {}: imported {}: {}", path_, path, nlohmann::json(stats).dump());
  return stats;
}

}  // namespace parallax::cache
