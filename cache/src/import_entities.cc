// Import steps for the referenced rows: devices, problems, variants, runs.
#include "import_steps.h"
#include "row_readers.h"

namespace parallax::cache::internal {

absl::Status ImportDevices(Db& src, Batch& b, IdMap& ids, RowCounts& counts) {
  CACHE_ASSIGN_OR_RETURN(
      rows, Select(src, absl::StrCat("SELECT ", kDeviceColumns, " FROM devices d ORDER BY d.id")));
  CACHE_ASSIGN_OR_RETURN(find, Query::Prepare(b.dst(), "SELECT id FROM devices WHERE fingerprint = ?"));
  CACHE_ASSIGN_OR_RETURN(
      insert, Query::Prepare(b.dst(),
                             "INSERT INTO devices (fingerprint, name, sm_count, cc_major, "
                             "  cc_minor, clock_khz, mem_bytes, l2_bytes, driver_version, "
                             "  nvrtc_version, created_at) "
                             "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id"));
  return ForEachRow(rows, [&](const Stmt& row) -> absl::Status {
    DeviceInfo d = ReadDevice(row);
    CACHE_ASSIGN_OR_RETURN(found, find.Int(d.fingerprint));
    if (found) {
      ids[d.id] = *found;
      ++counts.skipped;
      return b.RowDone();
    }
    CACHE_ASSIGN_OR_RETURN(
        id, insert.Int(d.fingerprint, d.name, d.sm_count, d.cc_major, d.cc_minor, d.clock_khz,
                       d.mem_bytes, d.l2_bytes, d.driver_version, d.nvrtc_version, d.created_at));
    ids[d.id] = id.value_or(0);
    ++counts.inserted;
    return b.RowDone();
  });
}

absl::Status ImportProblems(Db& src, Batch& b, IdMap& ids, RowCounts& counts) {
  CACHE_ASSIGN_OR_RETURN(rows, Select(src, "SELECT id, key, json FROM problems ORDER BY id"));
  CACHE_ASSIGN_OR_RETURN(find, Query::Prepare(b.dst(), "SELECT id FROM problems WHERE key = ?"));
  CACHE_ASSIGN_OR_RETURN(insert, Query::Prepare(b.dst(),
                                                "INSERT INTO problems (key, json) "
                                                "VALUES (?, ?) RETURNING id"));
  return ForEachRow(rows, [&](const Stmt& row) -> absl::Status {
    const std::string key = row.Text(1);
    CACHE_ASSIGN_OR_RETURN(found, find.Int(key));
    if (found) {
      ids[row.Int(0)] = *found;
      ++counts.skipped;
      return b.RowDone();
    }
    CACHE_ASSIGN_OR_RETURN(id, insert.Int(key, row.Text(2)));
    ids[row.Int(0)] = id.value_or(0);
    ++counts.inserted;
    return b.RowDone();
  });
}

absl::Status ImportVariants(Db& src, Batch& b, IdMap& ids, RowCounts& counts) {
  CACHE_ASSIGN_OR_RETURN(rows, Select(src,
                                      "SELECT id, key, generator_version FROM variants "
                                      "ORDER BY id"));
  CACHE_ASSIGN_OR_RETURN(find, Query::Prepare(b.dst(),
                                              "SELECT id, generator_version FROM variants "
                                              "WHERE key = ?"));
  CACHE_ASSIGN_OR_RETURN(insert, Query::Prepare(b.dst(),
                                                "INSERT INTO variants (key, "
                                                "generator_version) VALUES (?, ?) "
                                                "RETURNING id"));
  CACHE_ASSIGN_OR_RETURN(raise, Query::Prepare(b.dst(),
                                               "UPDATE variants SET generator_version = ? "
                                               "WHERE id = ?"));
  return ForEachRow(rows, [&](const Stmt& row) -> absl::Status {
    const std::string key = row.Text(1);
    const int64_t version = row.Int(2);
    CACHE_ASSIGN_OR_RETURN(found, find.Row(key));
    if (!found) {
      CACHE_ASSIGN_OR_RETURN(id, insert.Int(key, version));
      ids[row.Int(0)] = id.value_or(0);
      ++counts.inserted;
      return b.RowDone();
    }
    const int64_t id = find.stmt().Int(0);
    const int64_t ours = find.stmt().Int(1);
    if (absl::Status s = find.Reset(); !s.ok()) return s;
    ids[row.Int(0)] = id;
    if (version <= ours) {
      ++counts.skipped;
      return b.RowDone();
    }
    CACHE_ASSIGN_OR_RETURN(unused, raise.Int(version, id));
    (void)unused;
    ++counts.updated;
    return b.RowDone();
  });
}

absl::Status ImportRuns(Db& src, Batch& b, const IdMap& devices, IdMap& ids, RowCounts& counts) {
  CACHE_ASSIGN_OR_RETURN(rows, Select(src,
                                      "SELECT id, device_id, started_at, finished_at, "
                                      "status, params_json, progress_json FROM tuning_runs "
                                      "ORDER BY id"));
  CACHE_ASSIGN_OR_RETURN(find, Query::Prepare(b.dst(),
                                              "SELECT id FROM tuning_runs WHERE device_id = ? "
                                              "AND started_at = ? AND params_json = ?"));
  CACHE_ASSIGN_OR_RETURN(insert, Query::Prepare(b.dst(),
                                                "INSERT INTO tuning_runs (device_id, "
                                                "started_at, finished_at, status, params_json, "
                                                "progress_json) VALUES (?, ?, ?, ?, ?, ?) "
                                                "RETURNING id"));
  return ForEachRow(rows, [&](const Stmt& row) -> absl::Status {
    CACHE_ASSIGN_OR_RETURN(device, MapId(devices, row.Int(1), "device"));
    const int64_t started_at = row.Int(2);
    const std::string params = row.Text(5);
    CACHE_ASSIGN_OR_RETURN(found, find.Int(device, started_at, params));
    if (found) {
      ids[row.Int(0)] = *found;
      ++counts.skipped;
      return b.RowDone();
    }
    // Nothing in this process is running an imported run.
    std::string status = row.Text(4);
    if (status == "running") status = "interrupted";
    CACHE_ASSIGN_OR_RETURN(
        id, insert.Int(device, started_at, row.OptInt(3), status, params, row.Text(6)));
    ids[row.Int(0)] = id.value_or(0);
    ++counts.inserted;
    return b.RowDone();
  });
}

}  // namespace parallax::cache::internal
