#include "schema_v1.h"

#include "parallax/cache/db.h"

namespace parallax::cache::internal {

// v3: tuned results are keyed by what changes a kernel's speed, not by the driver patch level
// (device_key.h). Every device row takes parallax_device_key() of its fingerprint; rows that
// then coincide (one GPU seen under two drivers) become the newest of them: their runs and
// measurements move to it, and of their best configs per (problem, bucket) the one import
// would keep stays (newer generator, then NVRTC version; then the lower median; then the
// newer update).
absl::Status MigrateToV3(Db& db) {
  return db.Exec(R"sql(
CREATE TEMP TABLE plx_v3_devices AS
  SELECT d.id AS id,
         parallax_device_key(d.fingerprint) AS key,
         (SELECT k.id FROM devices k
            WHERE parallax_device_key(k.fingerprint) = parallax_device_key(d.fingerprint)
            ORDER BY k.created_at DESC, k.id DESC LIMIT 1) AS keep
  FROM devices d;

DELETE FROM best_configs WHERE rowid IN (
  SELECT b.rowid FROM best_configs b JOIN plx_v3_devices m ON m.id = b.device_id
  WHERE EXISTS (
    SELECT 1 FROM best_configs o JOIN plx_v3_devices mo ON mo.id = o.device_id
    WHERE mo.keep = m.keep AND o.problem_key = b.problem_key AND o.bucket = b.bucket
      AND o.rowid != b.rowid
      AND (o.generator_version > b.generator_version
        OR (o.generator_version = b.generator_version
          AND (o.nvrtc_version > b.nvrtc_version
            OR (o.nvrtc_version = b.nvrtc_version
              AND (o.median_us < b.median_us
                OR (o.median_us = b.median_us
                  AND (o.updated_at > b.updated_at
                    OR (o.updated_at = b.updated_at AND o.rowid > b.rowid))))))))));

UPDATE best_configs SET device_id = (SELECT keep FROM plx_v3_devices WHERE id = best_configs.device_id)
  WHERE device_id IN (SELECT id FROM plx_v3_devices WHERE id != keep);
UPDATE measurements SET device_id = (SELECT keep FROM plx_v3_devices WHERE id = measurements.device_id)
  WHERE device_id IN (SELECT id FROM plx_v3_devices WHERE id != keep);
UPDATE tuning_runs SET device_id = (SELECT keep FROM plx_v3_devices WHERE id = tuning_runs.device_id)
  WHERE device_id IN (SELECT id FROM plx_v3_devices WHERE id != keep);
DELETE FROM devices WHERE id IN (SELECT id FROM plx_v3_devices WHERE id != keep);
UPDATE devices SET fingerprint = parallax_device_key(fingerprint)
  WHERE fingerprint != parallax_device_key(fingerprint);

DROP TABLE plx_v3_devices;
)sql");
}

}  // namespace parallax::cache::internal
