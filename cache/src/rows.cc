#include "parallax/cache/rows.h"

#include "absl/strings/str_cat.h"

namespace parallax::cache {

absl::string_view ToString(MeasurementStatus status) {
  switch (status) {
    case MeasurementStatus::kOk:
      return "ok";
    case MeasurementStatus::kFailed:
      return "failed";
    case MeasurementStatus::kWrong:
      return "wrong";
    case MeasurementStatus::kTimeout:
      return "timeout";
  }
  return "failed";
}

absl::string_view ToString(RunStatus status) {
  switch (status) {
    case RunStatus::kRunning:
      return "running";
    case RunStatus::kDone:
      return "done";
    case RunStatus::kInterrupted:
      return "interrupted";
    case RunStatus::kFailed:
      return "failed";
    case RunStatus::kCancelled:
      return "cancelled";
  }
  return "failed";
}

absl::StatusOr<MeasurementStatus> ParseMeasurementStatus(absl::string_view text) {
  for (auto s : {MeasurementStatus::kOk, MeasurementStatus::kFailed, MeasurementStatus::kWrong,
                 MeasurementStatus::kTimeout}) {
    if (ToString(s) == text) return s;
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown measurement status '", text, "'"));
}

absl::StatusOr<RunStatus> ParseRunStatus(absl::string_view text) {
  for (auto s : {RunStatus::kRunning, RunStatus::kDone, RunStatus::kInterrupted, RunStatus::kFailed,
                 RunStatus::kCancelled}) {
    if (ToString(s) == text) return s;
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown run status '", text, "'"));
}

}  // namespace parallax::cache
