// Store: Import, merging another cache file into this one (rules documented in store.h).
// The file is untrusted input: it is opened hardened and read-only, its schema must equal
// ours, every row is validated before anything is merged, and the merge runs in short
// transactions so the store's lock is never held for long.
#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "import_control.h"
#include "import_source.h"
#include "import_steps.h"
#include "import_validate.h"
#include "parallax/cache/json.h"
#include "parallax/cache/schema.h"
#include "parallax/cache/store.h"
#include "parallax/cache/txn.h"

namespace parallax::cache {
namespace {

absl::Status Merge(Db& source, internal::Batch& batch, ImportStats& stats) {
  internal::EntityMaps maps;
  absl::Status s = batch.Begin();
  if (s.ok()) s = internal::ImportDevices(source, batch, maps.devices, stats.devices);
  if (s.ok()) s = internal::ImportProblems(source, batch, maps.problems, stats.problems);
  if (s.ok()) s = internal::ImportVariants(source, batch, maps.variants, stats.variants);
  if (s.ok()) s = internal::ImportRuns(source, batch, maps.devices, maps.runs, stats.runs);
  if (s.ok()) s = internal::ImportMeasurements(source, batch, maps, stats.measurements);
  if (s.ok()) s = internal::ImportBestConfigs(source, batch, maps.devices, stats.best_configs);
  if (s.ok()) s = internal::ImportBinaries(source, batch, stats.binaries);
  if (s.ok()) s = batch.Commit();
  return s;
}

}  // namespace

absl::StatusOr<ImportStats> Store::Import(const std::string& path, const ImportOptions& options) {
  absl::StatusOr<std::vector<Migration>> plan = MigrationPlan(options_.extra_migrations);
  if (!plan.ok()) return plan.status();
  internal::ImportControl control(options);
  internal::TempDbFile copy(internal::ImportCopyPath(path_));  // outlives the connection to it
  absl::StatusOr<Db> source =
      internal::OpenImportSource(path, *plan, options_.busy_timeout_ms, control, copy);
  if (!source.ok()) return source.status();

  ImportStats stats;
  absl::Status s;
  int commits = 0;
  {
    absl::StatusOr<Txn> read = Txn::BeginRead(*source);  // one snapshot for both passes
    if (!read.ok()) return control.Explain(read.status());
    s = internal::ValidateSource(*source, options, control);
    if (s.ok()) {
      internal::Batch batch(db_, mu_, control, options.rows_per_transaction);
      s = control.Explain(Merge(*source, batch, stats));
      commits = batch.commits();
    }
  }
  internal::ImportControl::Detach(*source);
  if (!s.ok()) {
    const std::string merged =
        commits == 0 ? "nothing was merged"
                     : "part of it was merged; importing the same file again completes it";
    return absl::Status(s.code(), absl::StrCat("import of ", path, " into ", path_, " stopped (",
                                               merged, "): ", s.message()));
  }
  spdlog::info("parallax cache {}: imported {}: {}", path_, path, nlohmann::json(stats).dump());
  return stats;
}

}  // namespace parallax::cache
