#pragma once
// Import's stop conditions: the caller's cancel and the time limit, checked between write
// batches and, through SQLite's progress handler, inside long reads of the source.

#include <chrono>

#include "absl/status/status.h"
#include "parallax/cache/db.h"
#include "parallax/cache/store_options.h"

namespace parallax::cache::internal {

class ImportControl {
 public:
  explicit ImportControl(const ImportOptions& options);
  ImportControl(const ImportControl&) = delete;
  ImportControl& operator=(const ImportControl&) = delete;

  // Cancelled or DeadlineExceeded once either applies; OK before.
  absl::Status Check() const;
  // Makes every statement on db stop (SQLITE_INTERRUPT) once Check() fails. The control
  // must outlive db's use; Detach before that otherwise.
  void Attach(Db& db) const;
  static void Detach(Db& db);
  // A statement interrupted by the handler reports an internal error: name the real cause.
  absl::Status Explain(absl::Status status) const;

 private:
  const ImportOptions& options_;
  const bool has_deadline_;
  const std::chrono::steady_clock::time_point deadline_;
};

}  // namespace parallax::cache::internal
