#pragma once
// The per-table steps of Store::Import, run in order.
// Each reads every row of one source table (already validated) and merges it by the rules in
// store.h, in the Batch's short transactions.

#include "absl/status/status.h"
#include "import_batch.h"
#include "import_query.h"
#include "parallax/cache/db.h"
#include "parallax/cache/reports.h"

namespace parallax::cache::internal {

struct EntityMaps {
  IdMap devices, problems, variants, runs;
};

absl::Status ImportDevices(Db& src, Batch& dst, IdMap& ids, RowCounts& counts);
absl::Status ImportProblems(Db& src, Batch& dst, IdMap& ids, RowCounts& counts);
absl::Status ImportVariants(Db& src, Batch& dst, IdMap& ids, RowCounts& counts);
absl::Status ImportRuns(Db& src, Batch& dst, const IdMap& devices, IdMap& ids, RowCounts& counts);
absl::Status ImportMeasurements(Db& src, Batch& dst, const EntityMaps& maps, RowCounts& counts);
absl::Status ImportBestConfigs(Db& src, Batch& dst, const IdMap& devices, RowCounts& counts);
absl::Status ImportBinaries(Db& src, Batch& dst, RowCounts& counts);

}  // namespace parallax::cache::internal
