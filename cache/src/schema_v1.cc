#include "schema_v1.h"

#include "parallax/cache/db.h"

namespace parallax::cache::internal {
namespace {

// Times are unix ms. Status columns carry CHECK constraints so a bad writer fails loudly.
// best_configs references devices by id but problems/variants by key: a best config must
// survive problem/variant rows being rebuilt, and keys are what lookups come with.
constexpr const char* kSchemaV1 = R"sql(
CREATE TABLE devices (
  id             INTEGER PRIMARY KEY,
  fingerprint    TEXT    NOT NULL UNIQUE,
  name           TEXT    NOT NULL DEFAULT '',
  sm_count       INTEGER NOT NULL DEFAULT 0,
  cc_major       INTEGER NOT NULL DEFAULT 0,
  cc_minor       INTEGER NOT NULL DEFAULT 0,
  clock_khz      INTEGER NOT NULL DEFAULT 0,
  mem_bytes      INTEGER NOT NULL DEFAULT 0,
  l2_bytes       INTEGER NOT NULL DEFAULT 0,
  driver_version INTEGER NOT NULL DEFAULT 0,
  nvrtc_version  INTEGER NOT NULL DEFAULT 0,
  created_at     INTEGER NOT NULL
);

CREATE TABLE problems (
  id   INTEGER PRIMARY KEY,
  key  TEXT NOT NULL UNIQUE,
  json TEXT NOT NULL DEFAULT '{}'
);

CREATE TABLE variants (
  id                INTEGER PRIMARY KEY,
  key               TEXT    NOT NULL UNIQUE,
  generator_version INTEGER NOT NULL
);

CREATE TABLE tuning_runs (
  id            INTEGER PRIMARY KEY,
  device_id     INTEGER NOT NULL REFERENCES devices(id),
  started_at    INTEGER NOT NULL,
  finished_at   INTEGER,
  status        TEXT    NOT NULL
                CHECK (status IN ('running', 'done', 'interrupted', 'failed', 'cancelled')),
  params_json   TEXT    NOT NULL DEFAULT '{}',
  progress_json TEXT    NOT NULL DEFAULT '{}'
);
CREATE INDEX tuning_runs_by_status ON tuning_runs(status);
CREATE INDEX tuning_runs_by_device ON tuning_runs(device_id, started_at);

CREATE TABLE measurements (
  id                INTEGER PRIMARY KEY,
  run_id            INTEGER REFERENCES tuning_runs(id) ON DELETE SET NULL,
  device_id         INTEGER NOT NULL REFERENCES devices(id),
  problem_id        INTEGER NOT NULL REFERENCES problems(id),
  variant_id        INTEGER NOT NULL REFERENCES variants(id),
  bucket            TEXT    NOT NULL DEFAULT '',
  status            TEXT    NOT NULL CHECK (status IN ('ok', 'failed', 'wrong', 'timeout')),
  median_us         REAL,
  min_us            REAL,
  max_us            REAL,
  reps              INTEGER NOT NULL DEFAULT 0,
  error_text        TEXT    NOT NULL DEFAULT '',
  rel_error         REAL,
  measured_at       INTEGER NOT NULL,
  generator_version INTEGER NOT NULL,
  nvrtc_version     INTEGER NOT NULL
);
-- Serves HasMeasurement (resume) and the import de-duplication key (v2 adds the bucket).
CREATE INDEX measurements_by_combo
  ON measurements(device_id, problem_id, variant_id, generator_version, measured_at);
CREATE INDEX measurements_by_problem ON measurements(problem_id, bucket);
CREATE INDEX measurements_by_variant ON measurements(variant_id);
CREATE INDEX measurements_by_run ON measurements(run_id);

CREATE TABLE best_configs (
  device_id         INTEGER NOT NULL REFERENCES devices(id),
  problem_key       TEXT    NOT NULL,
  bucket            TEXT    NOT NULL DEFAULT '',
  variant_key       TEXT    NOT NULL,
  median_us         REAL    NOT NULL,
  generator_version INTEGER NOT NULL,
  nvrtc_version     INTEGER NOT NULL,
  updated_at        INTEGER NOT NULL,
  PRIMARY KEY (device_id, problem_key, bucket)
);
CREATE INDEX best_configs_by_problem ON best_configs(problem_key);

CREATE TABLE binaries (
  key               TEXT    PRIMARY KEY,
  arch              TEXT    NOT NULL,
  generator_version INTEGER NOT NULL,
  nvrtc_version     INTEGER NOT NULL,
  driver_version    INTEGER NOT NULL DEFAULT 0,
  source_hash       TEXT    NOT NULL DEFAULT '',
  cubin             BLOB    NOT NULL,
  log               TEXT    NOT NULL DEFAULT '',
  created_at        INTEGER NOT NULL
);
)sql";

}  // namespace

absl::Status CreateSchemaV1(Db& db) { return db.Exec(kSchemaV1); }

}  // namespace parallax::cache::internal
