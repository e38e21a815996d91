// The Parallax tuning server: the Tuner service, gRPC health checking and reflection over
// one cache database, with tuning jobs run by a TuningBackend.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "parallax/service/job_manager.h"
#include "parallax/service/limits.h"
#include "parallax/service/tuning_backend.h"

namespace parallax::service {

struct ServerOptions {
  std::string listen = "127.0.0.1:50051";  // port 0: pick a free one (see Server::port())
  // A non-loopback address is refused unless the operator asked for it (`--listen` given
  // explicitly): the server must never end up on the network by accident.
  bool allow_non_loopback = false;
  std::string db_path;             // required; created if missing
  std::string auth_token;          // "": no authentication; else at least kMinAuthTokenBytes
  std::string tls_cert_pem;        // both or neither: TLS instead of plaintext
  std::string tls_key_pem;
  ServiceLimits limits;
  absl::Duration persist_interval = absl::Seconds(1);
  // How long GetBestConfig trusts its in-memory copy of the rows of a (device, problem)
  // before rereading them: bounds how late writes by other processes show. 0: no caching.
  absl::Duration lookup_cache_ttl = absl::Seconds(1);
  int ops_threads = 2;             // writes and listings off the reactor threads
  // grpc.reflection.v1alpha for grpcurl & co. Never offered with an auth_token: gRPC's
  // reflection service cannot check the token, and a server that wants one answers anonymous
  // callers nothing but health checks (the schema is proto/parallax/v1/tuner.proto anyway).
  bool reflection = true;
};

// Shorter tokens are refused by Server::Start (INVALID_ARGUMENT): guessable.
inline constexpr size_t kMinAuthTokenBytes = 16;

// The service name clients pass to grpc.health.v1.Health/Check.
inline constexpr char kTunerServiceName[] = "parallax.v1.Tuner";

// True for unix sockets, "localhost", "[::1]" and IPv4 literals in 127.0.0.0/8 (also as
// "[::ffff:127.x.y.z]"), with or without "ipv4:"/"ipv6:" and a port; false for everything
// else, "127.evil.example" included.
bool IsLoopbackAddress(absl::string_view listen);

class Server {
 public:
  static absl::StatusOr<std::unique_ptr<Server>> Start(ServerOptions options,
                                                       std::unique_ptr<TuningBackend> backend);
  ~Server();  // Shutdown(no grace) unless done
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  int port() const;
  // host:port clients can dial (the listen host with the selected port).
  std::string address() const;
  JobManager& jobs();
  TuningBackend& backend();

  // Reports NOT_SERVING, lets running jobs finish within `grace` (then interrupts them),
  // ends the watch streams, then stops gRPC with the rest of `grace` for calls in flight.
  // Idempotent; safe from any thread that is not a gRPC callback.
  void Shutdown(absl::Duration grace);
  // Blocks until Shutdown has completed.
  void Wait();

 private:
  struct Impl;
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace parallax::service
