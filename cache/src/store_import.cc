// Store: Import, merging another cache file into this one (rules documented in store.h).
#include <filesystem>
#include <random>
#include <tuple>
#include <unordered_map>

#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "open_checked.h"
#include "parallax/cache/json.h"
#include "parallax/cache/schema.h"
#include "parallax/cache/store.h"
#include "parallax/cache/txn.h"
#include "row_readers.h"
#include "store_internal.h"

namespace parallax::cache {
namespace {

using IdMap = std::unordered_map<int64_t, int64_t>;  // source id -> destination id

// Calls fn for every row of stmt; stops at the first error from sqlite or from fn.
template <typename Fn>
absl::Status ForEachRow(Stmt& stmt, Fn&& fn) {
  while (true) {
    absl::StatusOr<bool> row = stmt.Step();
    if (!row.ok()) return row.status();
    if (!*row) return absl::OkStatus();
    if (absl::Status s = fn(stmt); !s.ok()) return s;
  }
}

// A prepared statement reused per row: bind, step once, read the first column if any.
class Query {
 public:
  static absl::StatusOr<Query> Prepare(Db& db, absl::string_view sql) {
    absl::StatusOr<Stmt> stmt = db.Prepare(sql);
    if (!stmt.ok()) return stmt.status();
    return Query(std::move(*stmt));
  }
  // The first column of the first row, or nullopt when there is none.
  template <typename... Args>
  absl::StatusOr<std::optional<int64_t>> Int(const Args&... args) {
    if (absl::Status s = Start(args...); !s.ok()) return s;
    absl::StatusOr<bool> row = stmt_.Step();
    if (!row.ok()) return row.status();
    if (!*row) return std::optional<int64_t>();
    const int64_t value = stmt_.Int(0);
    // Finish a RETURNING write. Only after a row: stepping a statement that already
    // reported DONE would re-execute it.
    if (absl::Status s = stmt_.Run(); !s.ok()) return s;
    return std::optional<int64_t>(value);
  }
  // Steps once and leaves the row (if any) readable through stmt().
  template <typename... Args>
  absl::StatusOr<bool> Row(const Args&... args) {
    if (absl::Status s = Start(args...); !s.ok()) return s;
    return stmt_.Step();
  }
  const Stmt& stmt() const { return stmt_; }

 private:
  explicit Query(Stmt stmt) : stmt_(std::move(stmt)) {}
  template <typename... Args>
  absl::Status Start(const Args&... args) {
    if (absl::Status s = stmt_.Reset(); !s.ok()) return s;
    return stmt_.BindAll(args...);
  }
  Stmt stmt_;
};

// Source rows always map (foreign keys hold in a checked source); a miss is reported, not
// thrown.
absl::StatusOr<int64_t> MapId(const IdMap& ids, int64_t source_id, absl::string_view what) {
  auto it = ids.find(source_id);
  if (it == ids.end()) {
    return absl::DataLossError(
        absl::StrCat("source row refers to missing ", what, " id ", source_id));
  }
  return it->second;
}

#define PLX_ASSIGN_OR_RETURN(lhs, expr)   \
  auto lhs##_or = (expr);                 \
  if (!lhs##_or.ok()) return lhs##_or.status(); \
  auto& lhs = *lhs##_or

absl::StatusOr<Stmt> Select(Db& src, absl::string_view sql) { return src.Prepare(sql); }

absl::Status ImportDevices(Db& src, Db& dst, IdMap& ids, RowCounts& counts) {
  PLX_ASSIGN_OR_RETURN(rows, Select(src, absl::StrCat("SELECT ", internal::kDeviceColumns,
                                                      " FROM devices d ORDER BY d.id")));
  PLX_ASSIGN_OR_RETURN(find, Query::Prepare(dst, "SELECT id FROM devices WHERE fingerprint = ?"));
  PLX_ASSIGN_OR_RETURN(
      insert, Query::Prepare(dst,
                             "INSERT INTO devices (fingerprint, name, sm_count, cc_major, "
                             "  cc_minor, clock_khz, mem_bytes, l2_bytes, driver_version, "
                             "  nvrtc_version, created_at) "
                             "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id"));
  return ForEachRow(rows, [&](const Stmt& row) -> absl::Status {
    DeviceInfo d = internal::ReadDevice(row);
    PLX_ASSIGN_OR_RETURN(found, find.Int(d.fingerprint));
    if (found) {
      ids[d.id] = *found;
      ++counts.skipped;
      return absl::OkStatus();
    }
    PLX_ASSIGN_OR_RETURN(id, insert.Int(d.fingerprint, d.name, d.sm_count, d.cc_major,
                                        d.cc_minor, d.clock_khz, d.mem_bytes, d.l2_bytes,
                                        d.driver_version, d.nvrtc_version, d.created_at));
    ids[d.id] = id.value_or(0);
    ++counts.inserted;
    return absl::OkStatus();
  });
}

absl::Status ImportProblems(Db& src, Db& dst, IdMap& ids, RowCounts& counts) {
  PLX_ASSIGN_OR_RETURN(rows, Select(src, "SELECT id, key, json FROM problems ORDER BY id"));
  PLX_ASSIGN_OR_RETURN(find, Query::Prepare(dst, "SELECT id FROM problems WHERE key = ?"));
  PLX_ASSIGN_OR_RETURN(insert, Query::Prepare(dst, "INSERT INTO problems (key, json) "
                                                   "VALUES (?, ?) RETURNING id"));
  return ForEachRow(rows, [&](const Stmt& row) -> absl::Status {
    const std::string key = row.Text(1);
    PLX_ASSIGN_OR_RETURN(found, find.Int(key));
    if (found) {
      ids[row.Int(0)] = *found;
      ++counts.skipped;
      return absl::OkStatus();
    }
    PLX_ASSIGN_OR_RETURN(id, insert.Int(key, row.Text(2)));
    ids[row.Int(0)] = id.value_or(0);
    ++counts.inserted;
    return absl::OkStatus();
  });
}

absl::Status ImportVariants(Db& src, Db& dst, IdMap& ids, RowCounts& counts) {
  PLX_ASSIGN_OR_RETURN(rows, Select(src, "SELECT id, key, generator_version FROM variants "
                                         "ORDER BY id"));
  PLX_ASSIGN_OR_RETURN(find, Query::Prepare(dst, "SELECT id, generator_version FROM variants "
                                                 "WHERE key = ?"));
  PLX_ASSIGN_OR_RETURN(insert, Query::Prepare(dst, "INSERT INTO variants (key, "
                                                   "generator_version) VALUES (?, ?) "
                                                   "RETURNING id"));
  PLX_ASSIGN_OR_RETURN(raise, Query::Prepare(dst, "UPDATE variants SET generator_version = ? "
                                                  "WHERE id = ?"));
  return ForEachRow(rows, [&](const Stmt& row) -> absl::Status {
    const std::string key = row.Text(1);
    const int64_t version = row.Int(2);
    PLX_ASSIGN_OR_RETURN(found, find.Row(key));
    if (!found) {
      PLX_ASSIGN_OR_RETURN(id, insert.Int(key, version));
      ids[row.Int(0)] = id.value_or(0);
      ++counts.inserted;
      return absl::OkStatus();
    }
    const int64_t id = find.stmt().Int(0);
    ids[row.Int(0)] = id;
    if (version <= find.stmt().Int(1)) {
      ++counts.skipped;
      return absl::OkStatus();
    }
    PLX_ASSIGN_OR_RETURN(unused, raise.Int(version, id));
    (void)unused;
    ++counts.updated;
    return absl::OkStatus();
  });
}

absl::Status ImportRuns(Db& src, Db& dst, const IdMap& devices, IdMap& ids,
                        RowCounts& counts) {
  PLX_ASSIGN_OR_RETURN(rows, Select(src, "SELECT id, device_id, started_at, finished_at, "
                                         "status, params_json, progress_json FROM tuning_runs "
                                         "ORDER BY id"));
  PLX_ASSIGN_OR_RETURN(find, Query::Prepare(dst, "SELECT id FROM tuning_runs WHERE device_id = ? "
                                                 "AND started_at = ? AND params_json = ?"));
  PLX_ASSIGN_OR_RETURN(insert, Query::Prepare(dst, "INSERT INTO tuning_runs (device_id, "
                                                   "started_at, finished_at, status, params_json, "
                                                   "progress_json) VALUES (?, ?, ?, ?, ?, ?) "
                                                   "RETURNING id"));
  return ForEachRow(rows, [&](const Stmt& row) -> absl::Status {
    PLX_ASSIGN_OR_RETURN(device, MapId(devices, row.Int(1), "device"));
    const int64_t started_at = row.Int(2);
    const std::string params = row.Text(5);
    PLX_ASSIGN_OR_RETURN(found, find.Int(device, started_at, params));
    if (found) {
      ids[row.Int(0)] = *found;
      ++counts.skipped;
      return absl::OkStatus();
    }
    // Nothing in this process is running an imported run.
    std::string status = row.Text(4);
    if (status == "running") status = "interrupted";
    PLX_ASSIGN_OR_RETURN(id, insert.Int(device, started_at, row.OptInt(3), status, params,
                                        row.Text(6)));
    ids[row.Int(0)] = id.value_or(0);
    ++counts.inserted;
    return absl::OkStatus();
  });
}

struct EntityMaps {
  IdMap devices, problems, variants, runs;
};

absl::Status ImportMeasurements(Db& src, Db& dst, const EntityMaps& maps, RowCounts& counts) {
  PLX_ASSIGN_OR_RETURN(rows, Select(src, absl::StrCat("SELECT ", internal::kMeasurementColumns,
                                                      " FROM ", internal::kMeasurementJoin,
                                                      " ORDER BY m.id")));
  PLX_ASSIGN_OR_RETURN(
      find, Query::Prepare(dst, "SELECT 1 FROM measurements WHERE device_id = ? AND "
                                "problem_id = ? AND variant_id = ? AND generator_version = ? "
                                "AND measured_at = ? LIMIT 1"));
  PLX_ASSIGN_OR_RETURN(
      insert,
      Query::Prepare(dst,
                     "INSERT INTO measurements (run_id, device_id, problem_id, variant_id, "
                     "  bucket, status, median_us, min_us, max_us, reps, error_text, rel_error, "
                     "  measured_at, generator_version, nvrtc_version) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id"));
  return ForEachRow(rows, [&](const Stmt& row) -> absl::Status {
    PLX_ASSIGN_OR_RETURN(m, internal::ReadMeasurement(row));
    PLX_ASSIGN_OR_RETURN(device, MapId(maps.devices, m.device_id, "device"));
    PLX_ASSIGN_OR_RETURN(problem, MapId(maps.problems, m.problem_id, "problem"));
    PLX_ASSIGN_OR_RETURN(variant, MapId(maps.variants, m.variant_id, "variant"));
    PLX_ASSIGN_OR_RETURN(found,
                         find.Int(device, problem, variant, m.generator_version, m.measured_at));
    if (found) {
      ++counts.skipped;
      return absl::OkStatus();
    }
    std::optional<int64_t> run;
    if (m.run_id) {
      auto it = maps.runs.find(*m.run_id);
      if (it != maps.runs.end()) run = it->second;
    }
    PLX_ASSIGN_OR_RETURN(id, insert.Int(run, device, problem, variant, m.bucket,
                                        ToString(m.status), m.median_us, m.min_us, m.max_us,
                                        m.reps, m.error_text, m.rel_error, m.measured_at,
                                        m.generator_version, m.nvrtc_version));
    (void)id;
    ++counts.inserted;
    return absl::OkStatus();
  });
}

// True when the incoming entry should replace the stored one (rule in store.h).
bool IncomingWins(const BestConfig& incoming, int ours_generator, int ours_nvrtc,
                  double ours_median) {
  const auto theirs = std::make_tuple(incoming.generator_version, incoming.nvrtc_version);
  const auto ours = std::make_tuple(ours_generator, ours_nvrtc);
  if (theirs == ours) return incoming.median_us < ours_median;
  return theirs > ours;
}

absl::Status ImportBestConfigs(Db& src, Db& dst, const IdMap& devices, RowCounts& counts) {
  PLX_ASSIGN_OR_RETURN(rows, Select(src, absl::StrCat("SELECT ", internal::kBestConfigColumns,
                                                      ", b.device_id FROM best_configs b "
                                                      "JOIN devices d ON d.id = b.device_id")));
  PLX_ASSIGN_OR_RETURN(find, Query::Prepare(dst, "SELECT generator_version, nvrtc_version, "
                                                 "median_us FROM best_configs WHERE "
                                                 "device_id = ? AND problem_key = ? AND "
                                                 "bucket = ?"));
  // Insert and replace are one upsert; the decision is made in C++ beforehand.
  PLX_ASSIGN_OR_RETURN(
      upsert,
      Query::Prepare(dst,
                     "INSERT INTO best_configs (device_id, problem_key, bucket, variant_key, "
                     "  median_us, generator_version, nvrtc_version, updated_at) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                     "ON CONFLICT(device_id, problem_key, bucket) DO UPDATE SET "
                     "  variant_key = excluded.variant_key, median_us = excluded.median_us, "
                     "  generator_version = excluded.generator_version, "
                     "  nvrtc_version = excluded.nvrtc_version, updated_at = excluded.updated_at"));
  return ForEachRow(rows, [&](const Stmt& row) -> absl::Status {
    const BestConfig c = internal::ReadBestConfig(row);
    PLX_ASSIGN_OR_RETURN(device, MapId(devices, row.Int(8), "device"));
    PLX_ASSIGN_OR_RETURN(found, find.Row(device, c.problem_key, c.bucket));
    if (found) {
      const Stmt& ours = find.stmt();
      if (!IncomingWins(c, static_cast<int>(ours.Int(0)), static_cast<int>(ours.Int(1)),
                        ours.Double(2))) {
        ++counts.skipped;
        return absl::OkStatus();
      }
    }
    PLX_ASSIGN_OR_RETURN(unused, upsert.Int(device, c.problem_key, c.bucket, c.variant_key,
                                            c.median_us, c.generator_version, c.nvrtc_version,
                                            c.updated_at));
    (void)unused;
    ++(found ? counts.updated : counts.inserted);
    return absl::OkStatus();
  });
}

absl::Status ImportBinaries(Db& src, Db& dst, RowCounts& counts) {
  PLX_ASSIGN_OR_RETURN(rows, Select(src, absl::StrCat("SELECT ", internal::kBinaryColumns,
                                                      " FROM binaries ORDER BY key")));
  PLX_ASSIGN_OR_RETURN(find, Query::Prepare(dst, "SELECT 1 FROM binaries WHERE key = ?"));
  PLX_ASSIGN_OR_RETURN(
      insert, Query::Prepare(dst, "INSERT INTO binaries (key, arch, generator_version, "
                                  "nvrtc_version, driver_version, source_hash, cubin, log, "
                                  "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"));
  return ForEachRow(rows, [&](const Stmt& row) -> absl::Status {
    const BinaryEntry e = internal::ReadBinary(row);
    PLX_ASSIGN_OR_RETURN(found, find.Int(e.key));
    if (found) {
      ++counts.skipped;
      return absl::OkStatus();
    }
    PLX_ASSIGN_OR_RETURN(unused, insert.Int(e.key, e.arch, e.generator_version, e.nvrtc_version,
                                            e.driver_version, e.source_hash, e.cubin, e.log,
                                            e.created_at));
    (void)unused;
    ++counts.inserted;
    return absl::OkStatus();
  });
}

// Removes a temporary file and its sqlite companions when it goes out of scope.
class TempDbFile {
 public:
  explicit TempDbFile(std::string path) : path_(std::move(path)) {}
  ~TempDbFile() {
    std::error_code ec;
    for (const char* suffix : {"", "-wal", "-shm", "-journal"}) {
      std::filesystem::remove(path_ + suffix, ec);
    }
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// An older-schema source is copied (VACUUM INTO works on a read-only connection) and the
// copy migrated, so the user's file is never written.
absl::StatusOr<Db> MigratedCopy(Db& source, const std::vector<Migration>& plan,
                                const TempDbFile& temp) {
  if (absl::StatusOr<int> s = internal::Execute(source, "VACUUM INTO ?", temp.path()); !s.ok()) {
    return s.status();
  }
  DbOptions options;
  options.busy_timeout_ms = source.busy_timeout_ms();
  absl::StatusOr<Db> copy = Db::Open(temp.path(), options);
  if (!copy.ok()) return copy.status();
  absl::StatusOr<int> version = ApplyMigrations(*copy, plan);
  if (!version.ok()) return version.status();
  return copy;
}

std::string TempPathNextTo(const std::string& path) {
  std::random_device rd;
  return absl::StrCat(path, ".import-", rd(), ".tmp");
}

}  // namespace

absl::StatusOr<ImportStats> Store::Import(const std::string& path) {
  absl::StatusOr<std::vector<Migration>> plan = MigrationPlan(options_.extra_migrations);
  if (!plan.ok()) return plan.status();
  DbOptions source_options;
  source_options.busy_timeout_ms = options_.busy_timeout_ms;
  source_options.read_only = true;
  source_options.create_if_missing = false;
  absl::StatusOr<internal::CheckedDb> checked =
      internal::OpenChecked(path, source_options, /*check_integrity=*/true, plan->back().version);
  if (!checked.ok()) return checked.status();
  TempDbFile temp(TempPathNextTo(path_));  // declared first: outlives the connection to it
  Db source = std::move(checked->db);
  if (checked->user_version < plan->back().version) {
    absl::StatusOr<Db> copy = MigratedCopy(source, *plan, temp);
    if (!copy.ok()) return copy.status();
    source = std::move(*copy);
  }

  std::lock_guard lock(mu_);
  ImportStats stats;
  EntityMaps maps;
  absl::StatusOr<Txn> read = Txn::BeginRead(source);  // one consistent source snapshot
  if (!read.ok()) return read.status();
  absl::StatusOr<Txn> write = Txn::Begin(db_);  // all or nothing
  if (!write.ok()) return write.status();
  absl::Status s = ImportDevices(source, db_, maps.devices, stats.devices);
  if (s.ok()) s = ImportProblems(source, db_, maps.problems, stats.problems);
  if (s.ok()) s = ImportVariants(source, db_, maps.variants, stats.variants);
  if (s.ok()) s = ImportRuns(source, db_, maps.devices, maps.runs, stats.runs);
  if (s.ok()) s = ImportMeasurements(source, db_, maps, stats.measurements);
  if (s.ok()) s = ImportBestConfigs(source, db_, maps.devices, stats.best_configs);
  if (s.ok()) s = ImportBinaries(source, db_, stats.binaries);
  if (s.ok()) s = write->Commit();
  if (!s.ok()) {
    return absl::Status(s.code(), absl::StrCat("import of ", path, " into ", path_,
                                               " failed (nothing was merged): ", s.message()));
  }
  spdlog::info("parallax cache {}: imported {}: {}", path_, path, nlohmann::json(stats).dump());
  return stats;
}

}  // namespace parallax::cache
