#include "schema_v1.h"

#include "parallax/cache/db.h"

namespace parallax::cache::internal {

// v2: the measurement index covers the bucket, which import's de-duplication key now
// includes (two buckets measured within one millisecond were merged into one row). And
// the binary cache is emptied: v1 imports copied cubins from other files unchecked, and a
// cache rebuilds itself on demand.
absl::Status MigrateToV2(Db& db) {
  return db.Exec(R"sql(
DROP INDEX measurements_by_combo;
CREATE INDEX measurements_by_combo
  ON measurements(device_id, problem_id, variant_id, generator_version, bucket, measured_at);
DELETE FROM binaries;
)sql");
}

}  // namespace parallax::cache::internal
