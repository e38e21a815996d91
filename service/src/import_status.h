// What an ImportResults client is told when the merge itself fails. The cache merges in short
// transactions, so a merge that stops early (cancelled, out of time, database busy) may have
// committed part of the file; re-importing the same file is idempotent and completes it, and
// every such answer says so.
#pragma once

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"

namespace parallax::service {

grpc::Status ImportFailureForClient(const absl::Status& import_status);

}  // namespace parallax::service
