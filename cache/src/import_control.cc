#include "import_control.h"

#include <sqlite3.h>

#include "absl/strings/str_cat.h"

namespace parallax::cache::internal {
namespace {

// Virtual machine steps between checks: frequent enough to stop within milliseconds,
// rare enough to cost nothing measurable.
constexpr int kStepsPerCheck = 10000;

int OnProgress(void* control) {
  return static_cast<const ImportControl*>(control)->Check().ok() ? 0 : 1;
}

}  // namespace

ImportControl::ImportControl(const ImportOptions& options)
    : options_(options),
      has_deadline_(options.time_limit_ms > 0),
      deadline_(std::chrono::steady_clock::now() +
                std::chrono::milliseconds(has_deadline_ ? options.time_limit_ms : 0)) {}

absl::Status ImportControl::Check() const {
  if (options_.cancelled && options_.cancelled()) {
    return absl::CancelledError("import cancelled");
  }
  if (has_deadline_ && std::chrono::steady_clock::now() >= deadline_) {
    return absl::DeadlineExceededError(
        absl::StrCat("import exceeded its time limit of ", options_.time_limit_ms, " ms"));
  }
  return absl::OkStatus();
}

void ImportControl::Attach(Db& db) const {
  sqlite3_progress_handler(db.handle(), kStepsPerCheck, &OnProgress,
                           const_cast<ImportControl*>(this));
}

void ImportControl::Detach(Db& db) {
  if (db.is_open()) sqlite3_progress_handler(db.handle(), 0, nullptr, nullptr);
}

absl::Status ImportControl::Explain(absl::Status status) const {
  if (status.ok()) return status;
  if (absl::Status stop = Check(); !stop.ok()) return stop;
  return status;
}

}  // namespace parallax::cache::internal
