// What clients see of an error. A message echoes at most kMaxEchoBytes of any one value (a
// page token, a key from an uploaded file: a 2 MB echo would not even fit gRPC's 8 KiB
// trailer limit, so the client would get RESOURCE_EXHAUSTED instead of the error) and never a
// path of the server's (its database, directory or upload files, which the cache's messages
// name): those stay in the server log.
#pragma once

#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/strings/string_view.h"

namespace parallax::service {

inline constexpr size_t kMaxEchoBytes = 64;
inline constexpr size_t kMaxClientMessageBytes = 1024;

// `value` in single quotes for an error message: bytes outside printable ASCII escaped, cut
// after kMaxEchoBytes with "...(N bytes)".
std::string Echo(absl::string_view value);

class ClientErrors {
 public:
  // `server_paths`: the database, its directory and the like; each also as an absolute path.
  explicit ClientErrors(const std::vector<std::string>& server_paths);

  // The status with its message scrubbed: known server paths and anything else that looks
  // like an absolute path become "<server path>", words longer than kMaxEchoBytes are cut,
  // control characters become '?', the whole is cut at kMaxClientMessageBytes. When a path
  // was hidden the original is logged.
  grpc::Status Scrub(const grpc::Status& status) const;
  std::string ScrubMessage(absl::string_view message, bool* hid_path = nullptr) const;

 private:
  std::vector<std::string> paths_;  // longest first
};

}  // namespace parallax::service
