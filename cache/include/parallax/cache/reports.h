#pragma once
// Results of Store::Import and Store::Verify.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace parallax::cache {

struct RowCounts {
  int64_t inserted = 0;
  int64_t updated = 0;
  int64_t skipped = 0;
  // Rows whose key we hold with different content (binaries): ours are kept.
  int64_t conflicts = 0;
};

struct ImportStats {
  RowCounts devices;
  RowCounts problems;
  RowCounts variants;
  RowCounts runs;
  RowCounts measurements;
  RowCounts best_configs;
  RowCounts binaries;
};

struct VerifyReport {
  bool ok = false;  // integrity "ok" and no foreign key violations
  int schema_version = 0;
  std::vector<std::string> integrity_errors;    // PRAGMA integrity_check lines other than "ok"
  std::vector<std::string> foreign_key_errors;  // PRAGMA foreign_key_check rows
  std::map<std::string, int64_t> row_counts;    // table name -> rows
};

}  // namespace parallax::cache
