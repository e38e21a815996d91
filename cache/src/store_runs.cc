// Store: tuning runs (one row per tuning session, for progress display and resume).
#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "parallax/cache/clock.h"
#include "parallax/cache/store.h"
#include "row_readers.h"
#include "store_internal.h"

namespace parallax::cache {
namespace {

absl::Status RunNotFound(int64_t run_id) {
  return absl::NotFoundError(absl::StrCat("no tuning run with id ", run_id));
}

}  // namespace

absl::StatusOr<int64_t> Store::StartRun(int64_t device_id, const nlohmann::json& params) {
  std::lock_guard lock(mu_);
  return internal::QueryId(db_,
                           "INSERT INTO tuning_runs (device_id, started_at, status, params_json) "
                           "VALUES (?, ?, 'running', ?) RETURNING id",
                           device_id, NowUnixMs(), params.dump());
}

absl::Status Store::UpdateRunProgress(int64_t run_id, const nlohmann::json& progress) {
  std::lock_guard lock(mu_);
  absl::StatusOr<int> changed = internal::Execute(
      db_, "UPDATE tuning_runs SET progress_json = ? WHERE id = ?", progress.dump(), run_id);
  if (!changed.ok()) return changed.status();
  return *changed == 0 ? RunNotFound(run_id) : absl::OkStatus();
}

absl::Status Store::FinishRun(int64_t run_id, RunStatus status) {
  if (status == RunStatus::kRunning) {
    return absl::InvalidArgumentError("FinishRun needs a final status, not 'running'");
  }
  std::lock_guard lock(mu_);
  absl::StatusOr<int> changed =
      internal::Execute(db_, "UPDATE tuning_runs SET status = ?, finished_at = ? WHERE id = ?",
                        ToString(status), NowUnixMs(), run_id);
  if (!changed.ok()) return changed.status();
  return *changed == 0 ? RunNotFound(run_id) : absl::OkStatus();
}

absl::StatusOr<RunInfo> Store::GetRun(int64_t run_id) {
  std::lock_guard lock(mu_);
  absl::StatusOr<Stmt> stmt = db_.Prepare(
      absl::StrCat("SELECT ", internal::kRunColumns, " FROM tuning_runs r WHERE r.id = ?"));
  if (!stmt.ok()) return stmt.status();
  if (absl::Status s = stmt->BindAll(run_id); !s.ok()) return s;
  absl::StatusOr<bool> row = stmt->Step();
  if (!row.ok()) return row.status();
  if (!*row) return RunNotFound(run_id);
  return internal::ReadRun(*stmt);
}

absl::StatusOr<std::vector<RunInfo>> Store::ListRuns(const RunFilter& filter) {
  std::optional<std::string> status;
  if (filter.status) status = std::string(ToString(*filter.status));
  std::string sql =
      absl::StrCat("SELECT ", internal::kRunColumns,
                   " FROM tuning_runs r WHERE (?1 IS NULL OR r.device_id = ?1) "
                   "AND (?2 IS NULL OR r.status = ?2) ORDER BY r.started_at DESC, r.id DESC");
  if (filter.limit > 0) absl::StrAppend(&sql, " LIMIT ", filter.limit);
  std::lock_guard lock(mu_);
  absl::StatusOr<Stmt> stmt = db_.Prepare(sql);
  if (!stmt.ok()) return stmt.status();
  if (absl::Status s = stmt->BindAll(filter.device_id, status); !s.ok()) return s;
  std::vector<RunInfo> out;
  while (true) {
    absl::StatusOr<bool> row = stmt->Step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    absl::StatusOr<RunInfo> run = internal::ReadRun(*stmt);
    if (!run.ok()) return run.status();
    out.push_back(std::move(*run));
  }
  return out;
}

absl::StatusOr<int64_t> Store::MarkRunningAsInterrupted() {
  std::lock_guard lock(mu_);
  absl::StatusOr<int> changed = internal::Execute(
      db_,
      "UPDATE tuning_runs SET status = 'interrupted', finished_at = ? WHERE status = 'running'",
      NowUnixMs());
  if (!changed.ok()) return changed.status();
  if (*changed > 0) {
    spdlog::info("parallax cache {}: marked {} running run(s) as interrupted", path_, *changed);
  }
  return *changed;
}

}  // namespace parallax::cache
