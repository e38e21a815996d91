#pragma once
// Opening a file to import: read-only, hardened, its schema compared object by object with
// what this build's migrations create, checked for damage, and migrated in a private copy
// when older. Nothing in the file runs: no view, trigger or schema function.

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "import_control.h"
#include "parallax/cache/db.h"
#include "parallax/cache/schema.h"

namespace parallax::cache::internal {

// Removes a temporary database file and its sqlite companions when it goes out of scope.
class TempDbFile {
 public:
  explicit TempDbFile(std::string path) : path_(std::move(path)) {}
  ~TempDbFile();
  TempDbFile(const TempDbFile&) = delete;
  TempDbFile& operator=(const TempDbFile&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A name for the migrated copy next to the destination; it carries our pid so a later
// Store::Open can tell a crashed importer's leftovers from a live one's.
std::string ImportCopyPath(const std::string& destination);
// Removes leftovers of ImportCopyPath whose process is gone; returns how many.
int RemoveStaleImportCopies(const std::string& destination);

// Reading the file failed: whatever is the file's fault (damage, size limits, formats sqlite
// does not know) becomes InvalidArgument naming it; cancel, time limit, a missing file, a
// newer schema and a held lock keep their codes.
absl::Status SourceFault(const std::string& path, const absl::Status& status);

// InvalidArgument for anything wrong with the file (not SQLite, damaged, foreign or altered
// schema), FailedPrecondition for a newer schema, NotFound when missing. The control is
// attached to the returned connection.
absl::StatusOr<Db> OpenImportSource(const std::string& path, const std::vector<Migration>& plan,
                                    int busy_timeout_ms, const ImportControl& control,
                                    const TempDbFile& copy);

}  // namespace parallax::cache::internal
