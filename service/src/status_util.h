// absl::Status <-> grpc::Status; both use the canonical google.rpc codes.
#pragma once

#include <string>

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"

namespace parallax::service {

inline grpc::Status ToGrpc(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return {static_cast<grpc::StatusCode>(s.code()), std::string(s.message())};
}

inline absl::Status FromGrpc(const grpc::Status& s) {
  if (s.ok()) return absl::OkStatus();
  return {static_cast<absl::StatusCode>(s.error_code()), s.error_message()};
}

}  // namespace parallax::service
