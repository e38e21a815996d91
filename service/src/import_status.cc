#include "import_status.h"

#include <string>

#include "absl/strings/str_cat.h"

namespace parallax::service {
namespace {

constexpr char kRetrySafe[] =
    "part of the file may have been merged; importing the same file again is safe (the merge is idempotent)";

}  // namespace

grpc::Status ImportFailureForClient(const absl::Status& s) {
  const std::string message(s.message());
  switch (s.code()) {
    case absl::StatusCode::kOk: return grpc::Status::OK;
    // A damaged, foreign or hostile file is the client's input, not our data loss.
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kDataLoss:
      return {grpc::StatusCode::INVALID_ARGUMENT, absl::StrCat("data: ", message)};
    case absl::StatusCode::kCancelled:
      return {grpc::StatusCode::CANCELLED, absl::StrCat("import cancelled; ", kRetrySafe)};
    case absl::StatusCode::kDeadlineExceeded:
      return {grpc::StatusCode::DEADLINE_EXCEEDED,
              absl::StrCat("import ran past the server's time limit (import_time_limit_ms); ", kRetrySafe)};
    case absl::StatusCode::kUnavailable:
      return {grpc::StatusCode::UNAVAILABLE,
              absl::StrCat("the server's database is busy (", message, "); ", kRetrySafe)};
    case absl::StatusCode::kFailedPrecondition:
      return {grpc::StatusCode::FAILED_PRECONDITION, message};  // a newer schema than this server's
    case absl::StatusCode::kResourceExhausted:
      return {grpc::StatusCode::RESOURCE_EXHAUSTED, absl::StrCat(message, "; ", kRetrySafe)};
    default:
      return {grpc::StatusCode::INTERNAL, absl::StrCat("import failed: ", message, "; ", kRetrySafe)};
  }
}

}  // namespace parallax::service
