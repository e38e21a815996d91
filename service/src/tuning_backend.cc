#include "parallax/service/tuning_backend.h"

#include "absl/strings/str_cat.h"

namespace parallax::service {

const char* ToString(Strategy s) {
  switch (s) {
    case Strategy::kGuided: return "guided";
    case Strategy::kExhaustive: return "exhaustive";
    case Strategy::kRandom: return "random";
  }
  return "?";
}

absl::StatusOr<cache::DeviceInfo> NoGpuBackend::device(int ordinal) {
  return absl::NotFoundError(absl::StrCat("device ", ordinal, ": this server has no GPU"));
}

absl::Status NoGpuBackend::RunJob(const JobSpec&, ProgressSink&, const std::atomic<bool>&) {
  return absl::FailedPreconditionError("no GPU on this server; config lookups still work");
}

}  // namespace parallax::service
