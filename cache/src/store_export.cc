// Store: Export, a self-contained single-file copy.
#include <spdlog/spdlog.h>

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "parallax/cache/store.h"
#include "store_internal.h"

namespace parallax::cache {

absl::Status Store::Export(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::exists(path, ec)) {
    return absl::AlreadyExistsError(
        absl::StrCat("export target ", path, " already exists; refusing to overwrite it"));
  }
  std::lock_guard lock(mu_);
  // VACUUM INTO writes a compacted, consistent snapshot with no -wal/-shm companions, so the
  // result is one file that can be copied anywhere. It only reads this database, which a
  // read-only store allows (its connection cannot write the file), but query_only refuses it.
  if (options_.read_only) {
    if (absl::Status s = db_.Exec("PRAGMA query_only=OFF;"); !s.ok()) return s;
  }
  absl::StatusOr<int> done = internal::Execute(db_, "VACUUM INTO ?", path);
  if (options_.read_only) {
    if (absl::Status s = db_.Exec("PRAGMA query_only=ON;"); !s.ok()) return s;
  }
  if (!done.ok()) return done.status();
  spdlog::info("parallax cache {}: exported to {}", path_, path);
  return absl::OkStatus();
}

}  // namespace parallax::cache
