#pragma once
// The per-table steps of Store::Import, run in order inside one destination transaction.
// Each reads every row of one source table and merges it by the rules in store.h.

#include "absl/status/status.h"
#include "import_query.h"
#include "parallax/cache/db.h"
#include "parallax/cache/reports.h"

namespace parallax::cache::internal {

struct EntityMaps {
  IdMap devices, problems, variants, runs;
};

absl::Status ImportDevices(Db& src, Db& dst, IdMap& ids, RowCounts& counts);
absl::Status ImportProblems(Db& src, Db& dst, IdMap& ids, RowCounts& counts);
absl::Status ImportVariants(Db& src, Db& dst, IdMap& ids, RowCounts& counts);
absl::Status ImportRuns(Db& src, Db& dst, const IdMap& devices, IdMap& ids, RowCounts& counts);
absl::Status ImportMeasurements(Db& src, Db& dst, const EntityMaps& maps, RowCounts& counts);
absl::Status ImportBestConfigs(Db& src, Db& dst, const IdMap& devices, RowCounts& counts);
absl::Status ImportBinaries(Db& src, Db& dst, RowCounts& counts);

}  // namespace parallax::cache::internal
