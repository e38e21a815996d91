#include "auth.h"

namespace parallax::service {
namespace {

// Time independent of where the first difference is, so the token cannot be guessed byte by
// byte from response latency.
bool ConstantTimeEquals(grpc::string_ref a, const std::string& b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < b.size(); ++i)
    diff |= static_cast<unsigned char>(i < a.size() ? a.data()[i] ^ b[i] : b[i]);
  return diff == 0;
}

}  // namespace

grpc::Status Authorizer::Check(const grpc::CallbackServerContext* ctx) const {
  if (token_.empty()) return grpc::Status::OK;
  const auto& md = ctx->client_metadata();
  auto it = md.find("authorization");
  if (it == md.end())
    return {grpc::StatusCode::UNAUTHENTICATED, "missing \"authorization: Bearer <token>\" metadata"};
  const grpc::string_ref kPrefix("Bearer ");
  const grpc::string_ref value = it->second;
  if (!value.starts_with(kPrefix) || !ConstantTimeEquals(value.substr(kPrefix.size()), token_))
    return {grpc::StatusCode::UNAUTHENTICATED, "invalid bearer token"};
  return grpc::Status::OK;
}

}  // namespace parallax::service
