// Store: best configs, served only for the generator/NVRTC versions they were tuned with.
#include "absl/strings/str_cat.h"
#include "parallax/cache/clock.h"
#include "parallax/cache/store.h"
#include "row_readers.h"
#include "store_internal.h"

namespace parallax::cache {

absl::Status Store::SetBestConfig(const BestConfig& c) {
  if (c.problem_key.empty() || c.variant_key.empty()) {
    return absl::InvalidArgumentError("best config needs a problem key and a variant key");
  }
  std::lock_guard lock(mu_);
  absl::StatusOr<int64_t> device_id = internal::FindDeviceId(db_, c.device_fingerprint);
  if (!device_id.ok()) return device_id.status();
  return internal::Execute(
             db_,
             "INSERT INTO best_configs (device_id, problem_key, bucket, variant_key, median_us, "
             "  generator_version, nvrtc_version, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
             "ON CONFLICT(device_id, problem_key, bucket) DO UPDATE SET "
             "  variant_key = excluded.variant_key, median_us = excluded.median_us, "
             "  generator_version = excluded.generator_version, "
             "  nvrtc_version = excluded.nvrtc_version, updated_at = excluded.updated_at",
             *device_id, c.problem_key, c.bucket, c.variant_key, c.median_us, c.generator_version,
             c.nvrtc_version, c.updated_at != 0 ? c.updated_at : NowUnixMs())
      .status();
}

absl::StatusOr<BestConfig> Store::GetBestConfig(absl::string_view device_fingerprint,
                                                absl::string_view problem_key,
                                                absl::string_view bucket,
                                                const CurrentVersions& current) {
  std::lock_guard lock(mu_);
  // One GPU may sit under several fingerprints in a file not migrated to v3 (one per
  // driver): the current entry with the lowest time is the answer, else a stale one to name.
  absl::StatusOr<Stmt> stmt = db_.Prepare(absl::StrCat(
      "SELECT ", internal::kBestConfigColumns,
      " FROM best_configs b JOIN devices d ON d.id = b.device_id "
      "WHERE parallax_device_key(d.fingerprint) = parallax_device_key(?1) AND b.problem_key = ?2 "
      "  AND b.bucket = ?3 "
      "ORDER BY (b.generator_version = ?4 AND b.nvrtc_version = ?5) DESC, b.median_us, "
      "  b.updated_at DESC LIMIT 1"));
  if (!stmt.ok()) return stmt.status();
  if (absl::Status s = stmt->BindAll(device_fingerprint, problem_key, bucket,
                                     static_cast<int64_t>(current.generator_version),
                                     static_cast<int64_t>(current.nvrtc_version));
      !s.ok()) {
    return s;
  }
  absl::StatusOr<bool> row = stmt->Step();
  if (!row.ok()) return row.status();
  const std::string where = absl::StrCat("device '", device_fingerprint, "', problem '",
                                         problem_key, "', bucket '", bucket, "'");
  if (!*row) return absl::NotFoundError(absl::StrCat("no best config for ", where));
  BestConfig config = internal::ReadBestConfig(*stmt);
  if (config.generator_version != current.generator_version ||
      config.nvrtc_version != current.nvrtc_version) {
    return absl::NotFoundError(absl::StrCat(
        "best config for ", where, " is stale: tuned with generator v", config.generator_version,
        " / nvrtc ", config.nvrtc_version, ", current is generator v", current.generator_version,
        " / nvrtc ", current.nvrtc_version));
  }
  return config;
}

absl::StatusOr<std::vector<BestConfig>> Store::ListBestConfigs(const BestConfigFilter& filter) {
  std::lock_guard lock(mu_);
  absl::StatusOr<Stmt> stmt = db_.Prepare(absl::StrCat(
      "SELECT ", internal::kBestConfigColumns,
      " FROM best_configs b JOIN devices d ON d.id = b.device_id "
      "WHERE (?1 IS NULL OR parallax_device_key(d.fingerprint) = parallax_device_key(?1)) "
      "  AND (?2 IS NULL OR b.problem_key = ?2) "
      "ORDER BY d.fingerprint, b.problem_key, b.bucket"));
  if (!stmt.ok()) return stmt.status();
  if (absl::Status s = stmt->BindAll(filter.device_fingerprint, filter.problem_key); !s.ok()) {
    return s;
  }
  std::vector<BestConfig> out;
  while (true) {
    absl::StatusOr<bool> row = stmt->Step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    out.push_back(internal::ReadBestConfig(*stmt));
  }
  return out;
}

}  // namespace parallax::cache
