// Store: measurements (append-only timing results).
#include <string>
#include <variant>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "parallax/cache/clock.h"
#include "parallax/cache/store.h"
#include "parallax/cache/txn.h"
#include "row_readers.h"
#include "store_internal.h"

namespace parallax::cache {

absl::StatusOr<int64_t> Store::RecordMeasurement(const Measurement& m) {
  if (m.status == MeasurementStatus::kOk && !m.median_us.has_value()) {
    return absl::InvalidArgumentError("an 'ok' measurement needs median_us");
  }
  std::lock_guard lock(mu_);
  absl::StatusOr<Txn> txn = Txn::Begin(db_);
  if (!txn.ok()) return txn.status();
  absl::StatusOr<int64_t> id = internal::QueryId(
      db_,
      "INSERT INTO measurements (run_id, device_id, problem_id, variant_id, bucket, status, "
      "  median_us, min_us, max_us, reps, error_text, rel_error, measured_at, "
      "  generator_version, nvrtc_version) "
      "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
      m.run_id, m.device_id, m.problem_id, m.variant_id, m.bucket, ToString(m.status), m.median_us,
      m.min_us, m.max_us, m.reps, m.error_text, m.rel_error,
      m.measured_at != 0 ? m.measured_at : NowUnixMs(), m.generator_version, m.nvrtc_version);
  if (!id.ok()) return id.status();
  if (absl::Status s = txn->Commit(); !s.ok()) return s;
  return *id;
}

absl::StatusOr<bool> Store::HasMeasurement(int64_t device_id, int64_t problem_id,
                                           int64_t variant_id, int generator_version) {
  std::lock_guard lock(mu_);
  absl::StatusOr<int64_t> found = internal::QueryId(
      db_,
      "SELECT EXISTS (SELECT 1 FROM measurements WHERE device_id = ? AND problem_id = ? "
      "  AND variant_id = ? AND generator_version = ?)",
      device_id, problem_id, variant_id, generator_version);
  if (!found.ok()) return found.status();
  return *found != 0;
}

absl::StatusOr<std::vector<Measurement>> Store::ListMeasurements(const MeasurementFilter& filter) {
  std::vector<std::string> where;
  std::vector<std::variant<int64_t, std::string>> args;
  auto add = [&](const char* condition, auto value) {
    where.push_back(condition);
    args.emplace_back(std::move(value));
  };
  if (filter.device_fingerprint) {  // by DeviceKey, as GetBestConfig
    add("parallax_device_key(d.fingerprint) = parallax_device_key(?)", *filter.device_fingerprint);
  }
  if (filter.problem_key) add("p.key = ?", *filter.problem_key);
  if (filter.variant_key) add("v.key = ?", *filter.variant_key);
  if (filter.bucket) add("m.bucket = ?", *filter.bucket);
  if (filter.run_id) add("m.run_id = ?", *filter.run_id);
  if (filter.status) add("m.status = ?", std::string(ToString(*filter.status)));
  if (filter.generator_version) {
    add("m.generator_version = ?", static_cast<int64_t>(*filter.generator_version));
  }
  if (filter.measured_since) add("m.measured_at >= ?", *filter.measured_since);
  std::string sql =
      absl::StrCat("SELECT ", internal::kMeasurementColumns, " FROM ", internal::kMeasurementJoin);
  if (!where.empty()) absl::StrAppend(&sql, " WHERE ", absl::StrJoin(where, " AND "));
  absl::StrAppend(&sql, " ORDER BY m.measured_at, m.id");
  if (filter.limit > 0) absl::StrAppend(&sql, " LIMIT ", filter.limit);

  std::lock_guard lock(mu_);
  absl::StatusOr<Stmt> stmt = db_.Prepare(sql);
  if (!stmt.ok()) return stmt.status();
  for (size_t i = 0; i < args.size(); ++i) {
    const int index = static_cast<int>(i) + 1;
    absl::Status s = std::visit([&](const auto& v) { return stmt->Bind(index, v); }, args[i]);
    if (!s.ok()) return s;
  }
  std::vector<Measurement> out;
  while (true) {
    absl::StatusOr<bool> row = stmt->Step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    absl::StatusOr<Measurement> m = internal::ReadMeasurement(*stmt);
    if (!m.ok()) return m.status();
    out.push_back(std::move(*m));
  }
  return out;
}

}  // namespace parallax::cache
