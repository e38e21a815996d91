// Import steps for the results: measurements, best configs, binaries.
#include <spdlog/spdlog.h>

#include <tuple>

#include "import_steps.h"
#include "parallax/cache/rows.h"
#include "row_readers.h"

namespace parallax::cache::internal {
namespace {

// True when the incoming entry should replace the stored one (rule in store.h).
bool IncomingWins(const BestConfig& incoming, int ours_generator, int ours_nvrtc,
                  double ours_median) {
  const auto theirs = std::make_tuple(incoming.generator_version, incoming.nvrtc_version);
  const auto ours = std::make_tuple(ours_generator, ours_nvrtc);
  if (theirs == ours) return incoming.median_us < ours_median;
  return theirs > ours;
}

}  // namespace

absl::Status ImportMeasurements(Db& src, Batch& b, const EntityMaps& maps, RowCounts& counts) {
  CACHE_ASSIGN_OR_RETURN(rows, Select(src, absl::StrCat("SELECT ", kMeasurementColumns, " FROM ",
                                                        kMeasurementJoin, " ORDER BY m.id")));
  CACHE_ASSIGN_OR_RETURN(
      find, Query::Prepare(b.dst(),
                           "SELECT 1 FROM measurements WHERE device_id = ? AND "
                           "problem_id = ? AND variant_id = ? AND generator_version = ? "
                           "AND bucket = ? AND measured_at = ? AND nvrtc_version = ? "
                           "AND status = ? AND median_us IS ? LIMIT 1"));
  CACHE_ASSIGN_OR_RETURN(
      insert,
      Query::Prepare(b.dst(),
                     "INSERT INTO measurements (run_id, device_id, problem_id, variant_id, "
                     "  bucket, status, median_us, min_us, max_us, reps, error_text, rel_error, "
                     "  measured_at, generator_version, nvrtc_version) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id"));
  return ForEachRow(rows, [&](const Stmt& row) -> absl::Status {
    CACHE_ASSIGN_OR_RETURN(m, ReadMeasurement(row));
    CACHE_ASSIGN_OR_RETURN(device, MapId(maps.devices, m.device_id, "device"));
    CACHE_ASSIGN_OR_RETURN(problem, MapId(maps.problems, m.problem_id, "problem"));
    CACHE_ASSIGN_OR_RETURN(variant, MapId(maps.variants, m.variant_id, "variant"));
    // Everything that tells two measurements apart (store.h); the run does not: the same
    // measurement arrives under different run ids in different stores.
    CACHE_ASSIGN_OR_RETURN(found, find.Int(device, problem, variant, m.generator_version, m.bucket,
                                           m.measured_at, m.nvrtc_version, ToString(m.status),
                                           m.median_us));
    if (found) {
      ++counts.skipped;
      return b.RowDone();
    }
    std::optional<int64_t> run;
    if (m.run_id) {
      auto it = maps.runs.find(*m.run_id);
      if (it != maps.runs.end()) run = it->second;
    }
    CACHE_ASSIGN_OR_RETURN(
        id, insert.Int(run, device, problem, variant, m.bucket, ToString(m.status), m.median_us,
                       m.min_us, m.max_us, m.reps, m.error_text, m.rel_error, m.measured_at,
                       m.generator_version, m.nvrtc_version));
    (void)id;
    ++counts.inserted;
    return b.RowDone();
  });
}

absl::Status ImportBestConfigs(Db& src, Batch& b, const IdMap& devices, RowCounts& counts) {
  CACHE_ASSIGN_OR_RETURN(rows, Select(src, absl::StrCat("SELECT ", kBestConfigColumns,
                                                        ", b.device_id FROM best_configs b "
                                                        "JOIN devices d ON d.id = b.device_id")));
  CACHE_ASSIGN_OR_RETURN(find, Query::Prepare(b.dst(),
                                              "SELECT generator_version, nvrtc_version, "
                                              "median_us FROM best_configs WHERE "
                                              "device_id = ? AND problem_key = ? AND "
                                              "bucket = ?"));
  // Insert and replace are one upsert; the decision is made in C++ beforehand.
  CACHE_ASSIGN_OR_RETURN(
      upsert,
      Query::Prepare(b.dst(),
                     "INSERT INTO best_configs (device_id, problem_key, bucket, variant_key, "
                     "  median_us, generator_version, nvrtc_version, updated_at) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                     "ON CONFLICT(device_id, problem_key, bucket) DO UPDATE SET "
                     "  variant_key = excluded.variant_key, median_us = excluded.median_us, "
                     "  generator_version = excluded.generator_version, "
                     "  nvrtc_version = excluded.nvrtc_version, updated_at = excluded.updated_at"));
  return ForEachRow(rows, [&](const Stmt& row) -> absl::Status {
    const BestConfig c = ReadBestConfig(row);
    CACHE_ASSIGN_OR_RETURN(device, MapId(devices, row.Int(8), "device"));
    CACHE_ASSIGN_OR_RETURN(found, find.Row(device, c.problem_key, c.bucket));
    if (found) {
      const Stmt& ours = find.stmt();
      const bool wins = IncomingWins(c, static_cast<int>(ours.Int(0)),
                                     static_cast<int>(ours.Int(1)), ours.Double(2));
      if (absl::Status s = find.Reset(); !s.ok()) return s;
      if (!wins) {
        ++counts.skipped;
        return b.RowDone();
      }
    }
    CACHE_ASSIGN_OR_RETURN(unused,
                           upsert.Int(device, c.problem_key, c.bucket, c.variant_key, c.median_us,
                                      c.generator_version, c.nvrtc_version, c.updated_at));
    (void)unused;
    ++(found ? counts.updated : counts.inserted);
    return b.RowDone();
  });
}

// Never merged: a cubin is code for the GPU, and its key (a hash over the variant key and
// the generated source) cannot be checked against content the file supplies. The importing
// side recompiles on demand. A key we hold with other content is counted as a conflict.
absl::Status ImportBinaries(Db& src, Batch& b, RowCounts& counts) {
  CACHE_ASSIGN_OR_RETURN(rows, Select(src, "SELECT key, cubin FROM binaries ORDER BY key"));
  CACHE_ASSIGN_OR_RETURN(find, Query::Prepare(b.dst(), "SELECT cubin = ? FROM binaries WHERE key = ?"));
  return ForEachRow(rows, [&](const Stmt& row) -> absl::Status {
    CACHE_ASSIGN_OR_RETURN(same, find.Int(row.Blob(1), row.Text(0)));
    ++counts.skipped;
    if (same && *same == 0) {
      ++counts.conflicts;
      spdlog::warn("parallax cache import: binary {} differs from ours; ours kept",
                   row.Text(0).substr(0, 80));
    }
    return b.RowDone();
  });
}

}  // namespace parallax::cache::internal
