// The server's export/import files: "<dir>/.parallax-<what>-<pid>-<n>.db", next to the
// database (same filesystem). The pid in the name tells a live server's files from the
// leftovers of one that crashed or was killed mid-transfer.
#pragma once

#include <string>

#include "absl/strings/string_view.h"

namespace parallax::service {

std::string TempPath(const std::string& dir, absl::string_view what);

// Removes files of that pattern (and their SQLite -journal/-wal/-shm companions) in `dir`
// whose pid is no live process; returns how many. Live processes' files, this one's
// included, are left alone.
int RemoveStaleTempFiles(const std::string& dir);

}  // namespace parallax::service
