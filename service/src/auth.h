// Bearer-token check for every Tuner RPC: "authorization: Bearer <token>" must match the
// server's token (compared in constant time), else UNAUTHENTICATED. Done at the top of each
// handler rather than in a gRPC AuthMetadataProcessor because those only attach to secure
// (TLS) credentials and the token must also guard plaintext loopback servers; server
// interceptors in gRPC 1.51 cannot fail a call with a chosen status.
#pragma once

#include <string>

#include <grpcpp/grpcpp.h>

namespace parallax::service {

class Authorizer {
 public:
  explicit Authorizer(std::string token) : token_(std::move(token)) {}
  bool enabled() const { return !token_.empty(); }
  grpc::Status Check(const grpc::CallbackServerContext* ctx) const;

 private:
  std::string token_;
};

}  // namespace parallax::service
