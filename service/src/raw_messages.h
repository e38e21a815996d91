// The Tuner methods are registered raw (grpc::ByteBuffer in and out) so that the service, not
// gRPC, parses requests: gRPC 1.51's callback handlers answer a request that fails to parse
// (bad wire bytes, a string field that is not UTF-8) with UNIMPLEMENTED and an empty message,
// and never call the handler. Parsing here gives INVALID_ARGUMENT naming the message, and
// runs after the token check, so anonymous callers cannot make the server parse anything.
#pragma once

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"

namespace parallax::service {

template <typename M>
grpc::Status ParseRaw(const grpc::ByteBuffer& raw, M* message) {
  grpc::ByteBuffer copy(raw);  // Deserialize consumes its buffer; copies share the slices
  if (grpc::SerializationTraits<M>::Deserialize(&copy, message).ok()) return grpc::Status::OK;
  return {grpc::StatusCode::INVALID_ARGUMENT,
          absl::StrCat("request: not a valid ", M::descriptor()->full_name(),
                       " (malformed protobuf, or a string field that is not UTF-8)")};
}

template <typename M>
grpc::Status SerializeRaw(const M& message, grpc::ByteBuffer* out) {
  bool own = false;
  if (grpc::SerializationTraits<M>::Serialize(message, out, &own).ok()) return grpc::Status::OK;
  return {grpc::StatusCode::INTERNAL, absl::StrCat("cannot serialize the ", M::descriptor()->full_name())};
}

}  // namespace parallax::service
