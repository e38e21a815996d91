// Store: devices, problems and variants (the rows measurements refer to).
#include "absl/strings/str_cat.h"
#include "parallax/cache/clock.h"
#include "parallax/cache/store.h"
#include "row_readers.h"
#include "store_internal.h"

namespace parallax::cache {

namespace internal {

absl::StatusOr<int64_t> FindDeviceId(Db& db, absl::string_view fingerprint) {
  absl::StatusOr<int64_t> id =
      QueryId(db, "SELECT id FROM devices WHERE fingerprint = ?", fingerprint);
  if (id.status().code() == absl::StatusCode::kNotFound) {
    return absl::NotFoundError(
        absl::StrCat("cache ", db.path(), ": no device with fingerprint '", fingerprint, "'"));
  }
  return id;
}

}  // namespace internal

absl::StatusOr<int64_t> Store::UpsertDevice(const DeviceInfo& d) {
  if (d.fingerprint.empty()) return absl::InvalidArgumentError("device fingerprint is empty");
  std::lock_guard lock(mu_);
  // created_at keeps its first value; everything else follows the latest report.
  return internal::QueryId(
      db_,
      "INSERT INTO devices (fingerprint, name, sm_count, cc_major, cc_minor, clock_khz, "
      "  mem_bytes, l2_bytes, driver_version, nvrtc_version, created_at) "
      "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
      "ON CONFLICT(fingerprint) DO UPDATE SET name = excluded.name, "
      "  sm_count = excluded.sm_count, cc_major = excluded.cc_major, "
      "  cc_minor = excluded.cc_minor, clock_khz = excluded.clock_khz, "
      "  mem_bytes = excluded.mem_bytes, l2_bytes = excluded.l2_bytes, "
      "  driver_version = excluded.driver_version, nvrtc_version = excluded.nvrtc_version "
      "RETURNING id",
      d.fingerprint, d.name, d.sm_count, d.cc_major, d.cc_minor, d.clock_khz, d.mem_bytes,
      d.l2_bytes, d.driver_version, d.nvrtc_version,
      d.created_at != 0 ? d.created_at : NowUnixMs());
}

absl::StatusOr<DeviceInfo> Store::GetDevice(absl::string_view fingerprint) {
  std::lock_guard lock(mu_);
  absl::StatusOr<Stmt> stmt = db_.Prepare(
      absl::StrCat("SELECT ", internal::kDeviceColumns, " FROM devices d WHERE fingerprint = ?"));
  if (!stmt.ok()) return stmt.status();
  if (absl::Status s = stmt->BindAll(fingerprint); !s.ok()) return s;
  absl::StatusOr<bool> row = stmt->Step();
  if (!row.ok()) return row.status();
  if (!*row) {
    return absl::NotFoundError(
        absl::StrCat("cache ", path_, ": no device with fingerprint '", fingerprint, "'"));
  }
  return internal::ReadDevice(*stmt);
}

absl::StatusOr<std::vector<DeviceInfo>> Store::ListDevices() {
  std::lock_guard lock(mu_);
  absl::StatusOr<Stmt> stmt = db_.Prepare(
      absl::StrCat("SELECT ", internal::kDeviceColumns, " FROM devices d ORDER BY d.id"));
  if (!stmt.ok()) return stmt.status();
  std::vector<DeviceInfo> out;
  while (true) {
    absl::StatusOr<bool> row = stmt->Step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    out.push_back(internal::ReadDevice(*stmt));
  }
  return out;
}

absl::StatusOr<int64_t> Store::UpsertProblem(absl::string_view key, const nlohmann::json& problem) {
  if (key.empty()) return absl::InvalidArgumentError("problem key is empty");
  std::lock_guard lock(mu_);
  return internal::QueryId(db_,
                           "INSERT INTO problems (key, json) VALUES (?, ?) "
                           "ON CONFLICT(key) DO UPDATE SET json = excluded.json RETURNING id",
                           key, problem.dump());
}

absl::StatusOr<int64_t> Store::UpsertVariant(absl::string_view key, int generator_version) {
  if (key.empty()) return absl::InvalidArgumentError("variant key is empty");
  std::lock_guard lock(mu_);
  return internal::QueryId(
      db_,
      "INSERT INTO variants (key, generator_version) VALUES (?, ?) "
      "ON CONFLICT(key) DO UPDATE SET "
      "  generator_version = max(generator_version, excluded.generator_version) "
      "RETURNING id",
      key, generator_version);
}

}  // namespace parallax::cache
