#pragma once
// Options and query filters for Store.

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "parallax/cache/rows.h"
#include "parallax/cache/schema.h"

namespace parallax::cache {

struct StoreOptions {
  // Lock wait before a write gives up with Unavailable. WAL lets readers proceed meanwhile.
  int busy_timeout_ms = 5000;
  // PRAGMA quick_check on open, so a damaged file fails loudly instead of serving garbage.
  bool check_integrity_on_open = true;
  // Appended after BuiltinMigrations(); versions must continue the sequence. A test hook:
  // real schema changes belong in BuiltinMigrations().
  std::vector<Migration> extra_migrations;
  // A reader (the runtime, `db show`): the file is opened with SQLITE_OPEN_READONLY and is
  // never created, migrated or written (no WAL switch either). A missing file is NotFound;
  // an empty one reads as an empty database; an older schema is read as it is when every
  // newer step is Migration::reads_unchanged, else through a migrated in-memory copy; a newer
  // schema is refused (FailedPrecondition). Writes fail (PRAGMA query_only).
  bool read_only = false;
};

// How Store::Import treats the file it reads: as untrusted input from anybody.
struct ImportOptions {
  // Polled between write batches and by SQLite's progress handler on the source: returning
  // true stops the import with Cancelled. Batches already committed stay (re-importing the
  // same file is idempotent and completes it).
  std::function<bool()> cancelled;
  // Wall-clock limit on the whole import (checks and merge); 0: none. DeadlineExceeded.
  int64_t time_limit_ms = 0;
  // The cache stands alone and cannot parse keys itself: callers that can (the CLI, the
  // service) pass codegen's parsers. A non-OK status rejects the file naming the row.
  // check_variant_key judges keys that can be served (best_configs); the variants table
  // only records what was measured, which may include the tuner's planted test-only
  // variants: check_recorded_variant_key judges those (unset: check_variant_key does).
  std::function<absl::Status(absl::string_view)> check_variant_key;
  std::function<absl::Status(absl::string_view)> check_recorded_variant_key;
  std::function<absl::Status(absl::string_view)> check_problem_key;
  // Rows merged per short write transaction; the store's lock is released between them.
  int rows_per_transaction = 256;
};

// The generator and NVRTC versions of the running build. Best configs tuned under other
// versions are stale: kept and listed, never served.
struct CurrentVersions {
  int generator_version = 0;
  int nvrtc_version = 0;
};

// Unset fields do not filter. Results are ordered by (measured_at, id).
struct MeasurementFilter {
  std::optional<std::string> device_fingerprint;
  std::optional<std::string> problem_key;
  std::optional<std::string> variant_key;
  std::optional<std::string> bucket;
  std::optional<int64_t> run_id;
  std::optional<MeasurementStatus> status;
  std::optional<int> generator_version;
  std::optional<int64_t> measured_since;  // unix ms, inclusive
  int64_t limit = 0;                      // 0: no limit
};

// Ordered by (device_fingerprint, problem_key, bucket).
struct BestConfigFilter {
  std::optional<std::string> device_fingerprint;
  std::optional<std::string> problem_key;
};

// Newest run first.
struct RunFilter {
  std::optional<int64_t> device_id;
  std::optional<RunStatus> status;
  int64_t limit = 0;  // 0: no limit
};

}  // namespace parallax::cache
