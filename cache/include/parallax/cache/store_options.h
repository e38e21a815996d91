#pragma once
// Options and query filters for Store.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

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
