#include "sqlite_error.h"

#include <sqlite3.h>

#include "absl/strings/str_cat.h"

namespace parallax::cache::internal {
namespace {

absl::StatusCode CodeFor(int rc) {
  switch (rc & 0xff) {
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return absl::StatusCode::kDataLoss;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return absl::StatusCode::kUnavailable;
    case SQLITE_CONSTRAINT:
      return (rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY)
                 ? absl::StatusCode::kAlreadyExists
                 : absl::StatusCode::kFailedPrecondition;
    case SQLITE_CANTOPEN:
      return absl::StatusCode::kNotFound;
    case SQLITE_PERM:
    case SQLITE_READONLY:
    case SQLITE_AUTH:
      return absl::StatusCode::kPermissionDenied;
    case SQLITE_FULL:
    case SQLITE_NOMEM:
    case SQLITE_TOOBIG:
      return absl::StatusCode::kResourceExhausted;
    case SQLITE_RANGE:
      return absl::StatusCode::kOutOfRange;
    case SQLITE_MISMATCH:
      return absl::StatusCode::kInvalidArgument;
    default:
      return absl::StatusCode::kInternal;
  }
}

}  // namespace

absl::Status SqliteStatus(int rc, absl::string_view message, absl::string_view path,
                          absl::string_view context) {
  const absl::string_view generic = sqlite3_errstr(rc);
  return absl::Status(
      CodeFor(rc),
      absl::StrCat("sqlite cache ", path, ": ", context, ": ", message, " (",
                   message == generic ? "" : absl::StrCat(generic, ", "), "code ", rc, ")"));
}

}  // namespace parallax::cache::internal
