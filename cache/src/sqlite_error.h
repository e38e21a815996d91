#pragma once
// Mapping of sqlite result codes to absl::Status codes.

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace parallax::cache::internal {

// rc: a sqlite (extended) result code. message: sqlite's text (sqlite3_errmsg or similar).
absl::Status SqliteStatus(int rc, absl::string_view message, absl::string_view path,
                          absl::string_view context);

}  // namespace parallax::cache::internal
