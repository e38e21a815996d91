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
  // result is one file that can be copied anywhere.
  if (absl::StatusOr<int> s = internal::Execute(db_, "VACUUM INTO ?", path); !s.ok()) {
    return s.status();
  }
  spdlog::info("parallax cache {}: exported to {}", path_, path);
  return absl::OkStatus();
}

}  // namespace parallax::cache
