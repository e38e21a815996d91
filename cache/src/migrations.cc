#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "parallax/cache/db.h"
#include "parallax/cache/schema.h"
#include "parallax/cache/txn.h"
#include "schema_v1.h"

namespace parallax::cache {

const std::vector<Migration>& BuiltinMigrations() {
  static const auto* const kMigrations = new std::vector<Migration>{
      {1,
       "create devices, problems, variants, measurements, best_configs, binaries, "
       "tuning_runs",
       &internal::CreateSchemaV1},
      {2, "measurement index covers the bucket; binary cache emptied (v1 imported cubins unchecked)",
       &internal::MigrateToV2, /*reads_unchanged=*/true},
      {3, "device identities without the driver version, memory in GiB (cache/device_key.h); "
          "devices that differed only there merged",
       &internal::MigrateToV3, /*reads_unchanged=*/true},
  };
  return *kMigrations;
}

absl::StatusOr<std::vector<Migration>> MigrationPlan(const std::vector<Migration>& extra) {
  std::vector<Migration> plan = BuiltinMigrations();
  plan.insert(plan.end(), extra.begin(), extra.end());
  for (size_t i = 0; i < plan.size(); ++i) {
    if (plan[i].version != static_cast<int>(i) + 1 || !plan[i].apply) {
      return absl::InvalidArgumentError(
          absl::StrCat("cache migrations must be numbered 1..N without gaps and have a step; "
                       "entry ",
                       i, " has version ", plan[i].version));
    }
  }
  return plan;
}

absl::StatusOr<int> ApplyMigrations(Db& db, const std::vector<Migration>& plan) {
  absl::StatusOr<int> version = db.UserVersion();
  if (!version.ok()) return version.status();
  for (const Migration& step : plan) {
    if (step.version <= *version) continue;
    absl::StatusOr<Txn> txn = Txn::Begin(db);
    if (!txn.ok()) return txn.status();
    // Another opener may have migrated while we waited for the write lock.
    version = db.UserVersion();
    if (!version.ok()) return version.status();
    if (step.version <= *version) continue;
    if (step.version != *version + 1) {
      return absl::InternalError(absl::StrCat("cache ", db.path(), ": cannot apply migration ",
                                              step.version, " on schema version ", *version));
    }
    if (absl::Status s = step.apply(db); !s.ok()) {
      return absl::Status(s.code(),
                          absl::StrCat("cache ", db.path(), ": migration to v", step.version, " (",
                                       step.description, ") failed: ", s.message()));
    }
    if (absl::Status s = db.SetUserVersion(step.version); !s.ok()) return s;
    if (absl::Status s = txn->Commit(); !s.ok()) return s;
    if (db.path() != ":memory:") {  // a reader's private copy is nobody's news
      spdlog::info("parallax cache {}: migrated schema to v{} ({})", db.path(), step.version,
                   step.description);
    }
    *version = step.version;
  }
  return *version;
}

}  // namespace parallax::cache
