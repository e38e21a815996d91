#include "parallax/service/server.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <condition_variable>
#include <filesystem>
#include <mutex>

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/impl/server_builder_option.h>
#include <grpcpp/impl/server_builder_plugin.h>
#include <spdlog/spdlog.h>

#include "absl/strings/match.h"
#include "absl/strings/strip.h"
#include "absl/strings/str_cat.h"
#include "auth.h"
#include "client_errors.h"
#include "executor.h"
#include "import_limits.h"
#include "protobuf_log.h"
#include "temp_files.h"
#include "tuner_service.h"

namespace parallax::service {
namespace {

// Splits "host:port" / "[v6]:port"; the host keeps its brackets.
bool SplitHostPort(absl::string_view listen, absl::string_view* host, absl::string_view* port) {
  const size_t colon = listen.rfind(':');
  if (colon == absl::string_view::npos || colon == 0) return false;
  *host = listen.substr(0, colon);
  *port = listen.substr(colon + 1);
  return true;
}

// A literal address, parsed: a name that merely starts with "127." is not one.
bool IsLoopbackHost(absl::string_view host) {
  if (absl::EqualsIgnoreCase(host, "localhost")) return true;
  if (absl::ConsumePrefix(&host, "[")) {
    if (!absl::ConsumeSuffix(&host, "]")) return false;
    in6_addr a6{};
    if (inet_pton(AF_INET6, std::string(host).c_str(), &a6) != 1) return false;
    if (IN6_IS_ADDR_LOOPBACK(&a6)) return true;
    return IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127;
  }
  in_addr a4{};
  if (inet_pton(AF_INET, std::string(host).c_str(), &a4) != 1) return false;  // dotted quad only
  return (ntohl(a4.s_addr) >> 24) == 127;
}

// gRPC's reflection plugin, once initialised, joins every later ServerBuilder in the process;
// this takes it out of one builder.
class WithoutReflection final : public grpc::ServerBuilderOption {
 public:
  void UpdateArguments(grpc::ChannelArguments*) override {}
  void UpdatePlugins(std::vector<std::unique_ptr<grpc::ServerBuilderPlugin>>* plugins) override {
    std::erase_if(*plugins, [](const std::unique_ptr<grpc::ServerBuilderPlugin>& p) {
      return absl::StrContains(p->name(), "reflection");
    });
  }
};

absl::StatusOr<std::unique_ptr<cache::Store>> OpenStore(const std::string& path, bool check) {
  cache::StoreOptions o;
  o.check_integrity_on_open = check;  // once per process is enough
  return cache::Store::Open(path, o);
}

}  // namespace

bool IsLoopbackAddress(absl::string_view listen) {
  if (absl::StartsWith(listen, "unix:") || absl::StartsWith(listen, "unix-abstract:")) return true;
  if (!absl::ConsumePrefix(&listen, "ipv4:")) absl::ConsumePrefix(&listen, "ipv6:");
  absl::string_view host, port;
  if (!SplitHostPort(listen, &host, &port)) return false;
  return IsLoopbackHost(host);
}

struct Server::Impl {
  ServerOptions options;
  std::unique_ptr<TuningBackend> backend;
  std::unique_ptr<cache::Store> work_store;      // jobs, listings
  std::unique_ptr<cache::Store> lookup_store;    // reactor threads
  std::unique_ptr<cache::Store> transfer_store;  // export/import
  std::unique_ptr<LookupCache> lookup_cache;      // over lookup_store
  std::unique_ptr<JobManager> jobs;
  std::unique_ptr<Authorizer> auth;
  std::unique_ptr<ClientErrors> errors;
  std::unique_ptr<ImportGate> import_gate;
  std::unique_ptr<StreamWatchdog> watchdog;
  std::unique_ptr<Executor> ops;
  std::unique_ptr<Executor> transfers;
  std::unique_ptr<TunerService> service;
  std::unique_ptr<grpc::Server> grpc_server;
  int port = 0;
  std::string host;

  std::once_flag shutdown_once;
  std::mutex mu;
  std::condition_variable cv;
  bool stopped = false;
};

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Server::~Server() { Shutdown(absl::ZeroDuration()); }

int Server::port() const { return impl_->port; }
std::string Server::address() const {
  return impl_->port > 0 ? absl::StrCat(impl_->host, ":", impl_->port) : impl_->options.listen;
}
JobManager& Server::jobs() { return *impl_->jobs; }
TuningBackend& Server::backend() { return *impl_->backend; }

absl::StatusOr<std::unique_ptr<Server>> Server::Start(ServerOptions options, std::unique_ptr<TuningBackend> backend) {
  if (options.db_path.empty()) return absl::InvalidArgumentError("db_path: required");
  if (!options.allow_non_loopback && !IsLoopbackAddress(options.listen))
    return absl::PermissionDeniedError(absl::StrCat(
        "listen=", options.listen, ": not a loopback address; pass --listen explicitly to serve on the network"));
  if (options.tls_cert_pem.empty() != options.tls_key_pem.empty())
    return absl::InvalidArgumentError("tls: give both the certificate and the key, or neither");
  if (!options.auth_token.empty() && options.auth_token.size() < kMinAuthTokenBytes)
    return absl::InvalidArgumentError(absl::StrCat("auth token: ", options.auth_token.size(),
                                                   " characters is guessable; use at least ", kMinAuthTokenBytes,
                                                   " (e.g. `openssl rand -hex 32`)"));
  // Before any gRPC thread of this server exists: protobuf's handler is process-wide.
  InstallProtobufLogThrottle();
  auto impl = std::make_unique<Impl>();
  impl->backend = std::move(backend);
  const std::filesystem::path db(options.db_path);
  std::error_code ec;
  if (db.has_parent_path()) std::filesystem::create_directories(db.parent_path(), ec);

  absl::StatusOr<std::unique_ptr<cache::Store>> store = OpenStore(options.db_path, true);
  if (!store.ok()) return store.status();
  impl->work_store = *std::move(store);
  for (auto* slot : {&impl->lookup_store, &impl->transfer_store}) {
    store = OpenStore(options.db_path, false);
    if (!store.ok()) return store.status();
    *slot = *std::move(store);
  }
  impl->lookup_cache = std::make_unique<LookupCache>(*impl->lookup_store, options.lookup_cache_ttl);
  JobManagerOptions jm;
  jm.limits = options.limits;
  jm.persist_interval = options.persist_interval;
  jm.on_backend_returned = [cache = impl->lookup_cache.get()] { cache->InvalidateAll(); };
  absl::StatusOr<std::unique_ptr<JobManager>> jobs = JobManager::Start(*impl->work_store, *impl->backend, jm);
  if (!jobs.ok()) return jobs.status();
  impl->jobs = *std::move(jobs);
  if (impl->jobs->interrupted_on_start() > 0)
    spdlog::warn("{} job(s) left running by a previous server are now marked interrupted",
                 impl->jobs->interrupted_on_start());

  const std::string temp_dir = db.has_parent_path() ? db.parent_path().string() : ".";
  if (const int stale = RemoveStaleTempFiles(temp_dir); stale > 0)
    spdlog::info("removed {} transfer file(s) left in {} by servers that are gone", stale, temp_dir);
  impl->auth = std::make_unique<Authorizer>(options.auth_token);
  impl->errors = std::make_unique<ClientErrors>(std::vector<std::string>{options.db_path, temp_dir});
  impl->import_gate =
      std::make_unique<ImportGate>(options.limits.max_concurrent_imports, options.limits.max_import_temp_bytes);
  // A tick of a quarter of the idle limit (10 ms to 1 s) ends a stalled stream within 25% late.
  const absl::Duration idle = absl::Milliseconds(options.limits.import_idle_limit_ms);
  impl->watchdog = std::make_unique<StreamWatchdog>(
      options.limits.import_idle_limit_ms > 0 ? std::clamp(idle / 4, absl::Milliseconds(10), absl::Seconds(1))
                                              : absl::Seconds(1));
  impl->ops = std::make_unique<Executor>("ops", options.ops_threads, 256);
  impl->transfers = std::make_unique<Executor>("transfers", 1, 4);
  ServiceDeps deps;
  deps.limits = options.limits;
  deps.lookup_store = impl->lookup_store.get();
  deps.lookup_cache = impl->lookup_cache.get();
  deps.list_store = impl->work_store.get();
  deps.transfer_store = impl->transfer_store.get();
  deps.jobs = impl->jobs.get();
  deps.ops = impl->ops.get();
  deps.transfers = impl->transfers.get();
  deps.auth = impl->auth.get();
  deps.errors = impl->errors.get();
  deps.import_gate = impl->import_gate.get();
  deps.watchdog = impl->watchdog.get();
  deps.temp_dir = temp_dir;
  impl->service = std::make_unique<TunerService>(std::move(deps));

  grpc::EnableDefaultHealthCheckService(true);
  const bool reflection = options.reflection && options.auth_token.empty();
  if (options.reflection && !reflection)
    spdlog::info("server reflection is off: it cannot check the bearer token (the API is proto/parallax/v1/tuner.proto)");
  if (reflection) grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  if (!reflection) builder.SetOption(std::make_unique<WithoutReflection>());
  std::shared_ptr<grpc::ServerCredentials> creds = grpc::InsecureServerCredentials();
  if (!options.tls_cert_pem.empty()) {
    grpc::SslServerCredentialsOptions ssl;
    ssl.pem_key_cert_pairs.push_back({options.tls_key_pem, options.tls_cert_pem});
    creds = grpc::SslServerCredentials(ssl);
  }
  // Without this, Linux lets a second server bind the same port and steal half the calls.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.AddListeningPort(options.listen, creds, &impl->port);
  builder.SetMaxReceiveMessageSize(static_cast<int>(options.limits.max_message_bytes));
  builder.SetMaxSendMessageSize(static_cast<int>(options.limits.max_message_bytes));
  builder.RegisterService(impl->service.get());
  impl->grpc_server = builder.BuildAndStart();
  if (!impl->grpc_server || (impl->port == 0 && !absl::StartsWith(options.listen, "unix")))
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options.listen,
                                               " (address in use or invalid; see the gRPC log above)"));
  absl::string_view host, port;
  impl->host = SplitHostPort(options.listen, &host, &port) ? std::string(host) : options.listen;
  if (grpc::HealthCheckServiceInterface* health = impl->grpc_server->GetHealthCheckService()) {
    health->SetServingStatus(true);
    health->SetServingStatus(kTunerServiceName, true);
  }
  impl->options = std::move(options);
  const std::string auth_mode = impl->options.auth_token.empty() ? "no auth" : "bearer token";
  const std::string tls_mode = impl->options.tls_cert_pem.empty() ? "plaintext" : "TLS";
  spdlog::info("parallax tuner listening on {}:{} ({}, {}), {} GPU(s), db {}", impl->host, impl->port, tls_mode,
               auth_mode, impl->jobs->device_count(), impl->options.db_path);
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

void Server::Shutdown(absl::Duration grace) {
  Impl& s = *impl_;
  std::call_once(s.shutdown_once, [&] {
    const absl::Time deadline = absl::Now() + grace;
    spdlog::info("shutting down (grace {})", absl::FormatDuration(grace));
    if (grpc::HealthCheckServiceInterface* health = s.grpc_server->GetHealthCheckService())
      health->SetServingStatus(false);
    // Jobs first: their watchers get a terminal snapshot, so watch streams end by themselves.
    s.jobs->Shutdown(grace);
    // Pool threads keep running meanwhile, so queued calls still get their answer. Even with
    // no grace left, calls get a moment to flush what was already written (the terminal
    // snapshots of watch streams); gRPC cancels whatever is still open after that.
    s.grpc_server->Shutdown(absl::ToChronoTime(std::max(deadline, absl::Now() + absl::Milliseconds(250))));
    s.ops->Stop();
    s.transfers->Stop();
    s.grpc_server->Wait();
    spdlog::info("server stopped");
    std::lock_guard lock(s.mu);
    s.stopped = true;
    s.cv.notify_all();
  });
}

void Server::Wait() {
  std::unique_lock lock(impl_->mu);
  impl_->cv.wait(lock, [&] { return impl_->stopped; });
}

}  // namespace parallax::service
