// `parallax serve`: runs the gRPC tuning service over a cache database until SIGTERM/SIGINT,
// then shuts down gracefully (running jobs get --shutdown-grace to finish, else are
// recorded as interrupted and can be resumed by the next server).
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <pthread.h>
#include <string>
#include <sys/stat.h>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "cli_io.h"
#include "cli_options.h"
#include "parallax/search/tune_args.h"
#include "parallax/service/client.h"
#include "parallax/service/search_backend.h"
#include "parallax/service/server.h"
#include "registry.h"

namespace parallax::cli {
namespace {

struct ServeOptions {
  std::string listen = "127.0.0.1:50051";
  std::string db;  // "": $PARALLAX_DB, else the XDG default (cache/paths.h)
  std::string auth_token_file;
  std::string tls_cert;
  std::string tls_key;
  int max_queue = 16;
  int max_problems = 64;
  double max_budget = 24 * 3600;
  double shutdown_grace = 10;
  int max_imports = 2;
  int64_t import_temp_mib = 2048;
  double import_time_limit = 1800;
  double transfer_idle_limit = 60;
  std::string port_file;
  std::string log_level = "info";
  bool no_reflection = false;
  bool no_gpu = false;
  std::string cache_dir;  // "": search::DefaultCacheDir()
  CLI::Option* listen_opt = nullptr;
};

// Tuning on this machine's GPUs through the search layer (this executable is the worker);
// without a usable GPU the server answers lookups and refuses tuning (FAILED_PRECONDITION).
std::unique_ptr<service::TuningBackend> MakeBackend(const ServeOptions& o, const std::string& db_path) {
  if (o.no_gpu) {
    spdlog::info("--no-gpu: serving lookups only");
    return std::make_unique<service::NoGpuBackend>();
  }
  service::SearchBackendOptions so;
  so.db_path = db_path;
  so.worker_argv = {SelfPath(), "worker"};
  so.cache_dir = o.cache_dir;
  absl::StatusOr<std::unique_ptr<service::SearchBackend>> b = service::SearchBackend::Create(so);
  if (!b.ok()) {
    spdlog::info("no GPU to tune on ({}); serving lookups only", std::string(b.status().message()));
    return std::make_unique<service::NoGpuBackend>();
  }
  for (int i = 0; i < (*b)->device_count(); ++i)
    if (absl::StatusOr<cache::DeviceInfo> d = (*b)->device(i); d.ok())
      spdlog::info("GPU {}: {} ({} SMs), one tuning worker", i, d->name, d->sm_count);
  return *std::move(b);
}

absl::Status WritePortFile(const std::string& path, int port) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << port << "\n";
    if (!out) return absl::PermissionDeniedError(absl::StrCat(tmp, ": cannot write"));
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);  // readers never see a partial number
  if (ec) return absl::PermissionDeniedError(absl::StrCat(path, ": ", ec.message()));
  return absl::OkStatus();
}

int RunServe(const ServeOptions& o) {
  // Debian's abseil checks lock order on every absl::Mutex operation (gRPC takes several per
  // call): about 8% of a loaded server's CPU spent on a debugging aid.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  auto logger = spdlog::stderr_color_mt("parallax-serve");
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(o.log_level));

  service::ServerOptions so;
  so.listen = o.listen;
  so.allow_non_loopback = o.listen_opt->count() > 0;
  if (o.max_budget <= 0) return Fail(kExitUsage, "--max-budget must be above 0");
  absl::StatusOr<std::string> db = RequiredDbPath(o.db, "serve");
  if (!db.ok()) return Fail(kExitUsage, db.status().message());
  so.db_path = *db;
  so.limits.max_queue = o.max_queue;
  so.limits.max_problems_per_request = o.max_problems;
  so.limits.max_budget_seconds = o.max_budget;
  so.limits.max_concurrent_imports = o.max_imports;
  so.limits.max_import_temp_bytes = o.import_temp_mib << 20;
  so.limits.import_time_limit_ms = static_cast<int64_t>(o.import_time_limit * 1000);
  so.limits.import_idle_limit_ms = static_cast<int64_t>(o.transfer_idle_limit * 1000);
  so.reflection = !o.no_reflection;
  if (!o.auth_token_file.empty()) {
    absl::StatusOr<std::string> token = service::ReadTokenFile(o.auth_token_file);
    if (!token.ok()) return Fail(kExitUsage, token.status().message());
    if (token->size() < service::kMinAuthTokenBytes)
      return Fail(kExitUsage, absl::StrCat("--auth-token-file ", o.auth_token_file, ": the token has ", token->size(),
                                           " characters; use at least ", service::kMinAuthTokenBytes,
                                           " (e.g. `openssl rand -hex 32 > ", o.auth_token_file, "`)"));
    so.auth_token = *std::move(token);
    struct stat st {};
    if (stat(o.auth_token_file.c_str(), &st) == 0 && (st.st_mode & 077) != 0)
      spdlog::warn("{} is readable by other users; chmod 600 it", o.auth_token_file);
  }
  if (o.tls_cert.empty() != o.tls_key.empty()) return Fail(kExitUsage, "--tls-cert and --tls-key go together");
  if (!o.tls_cert.empty()) {
    absl::StatusOr<std::string> cert = service::ReadTextFile(o.tls_cert);
    absl::StatusOr<std::string> key = service::ReadTextFile(o.tls_key);
    if (!cert.ok()) return Fail(kExitUsage, cert.status().message());
    if (!key.ok()) return Fail(kExitUsage, key.status().message());
    so.tls_cert_pem = *std::move(cert);
    so.tls_key_pem = *std::move(key);
  }
  if (so.allow_non_loopback && !service::IsLoopbackAddress(so.listen)) {
    if (so.auth_token.empty()) spdlog::warn("serving {} to the network without --auth-token-file", so.listen);
    if (so.tls_cert_pem.empty()) spdlog::warn("serving {} to the network without TLS", so.listen);
  }

  // Signals are taken by sigwait below; block them before gRPC starts its threads, which
  // inherit the mask, so no thread of the pool is ever interrupted by one.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  absl::StatusOr<std::unique_ptr<service::Server>> server = service::Server::Start(so, MakeBackend(o, so.db_path));
  if (!server.ok()) {
    const int code = absl::IsPermissionDenied(server.status()) || absl::IsInvalidArgument(server.status())
                         ? kExitUsage
                         : kExitFailure;
    return Fail(code, absl::StrCat("serve: ", server.status().message()));
  }
  if (!o.port_file.empty()) {
    if (absl::Status s = WritePortFile(o.port_file, (*server)->port()); !s.ok())
      return Fail(kExitFailure, s.message());
  }
  int signal = 0;
  sigwait(&signals, &signal);
  spdlog::info("received {}", signal == SIGTERM ? "SIGTERM" : "SIGINT");
  (*server)->Shutdown(absl::Seconds(o.shutdown_grace));
  return kExitOk;
}

Action SetupServe(CLI::App& cmd) {
  auto o = std::make_shared<ServeOptions>();
  o->listen_opt = cmd.add_option("--listen", o->listen,
                                 "host:port to serve on (port 0: any free port). Non-loopback addresses "
                                 "are only used when given here explicitly")
                      ->capture_default_str();
  AddDbOption(cmd, o->db, "Tuning database to serve and tune into (created with its directories)");
  cmd.add_option("--auth-token-file", o->auth_token_file,
                 "Require \"authorization: Bearer <token>\" with the token in this file (at least 16 "
                 "characters). Server reflection is then off: it cannot check the token")
      ->check(CLI::ExistingFile);
  cmd.add_option("--tls-cert", o->tls_cert, "PEM certificate chain: serve TLS")->check(CLI::ExistingFile);
  cmd.add_option("--tls-key", o->tls_key, "PEM private key of --tls-cert")->check(CLI::ExistingFile);
  cmd.add_option("--max-queue", o->max_queue, "Queued tuning jobs before RESOURCE_EXHAUSTED")
      ->capture_default_str()->check(CLI::Range(1, 100000));
  cmd.add_option("--max-problems", o->max_problems, "Problems per SubmitTuning request")
      ->capture_default_str()->check(CLI::Range(1, 10000));
  AddDurationOption(cmd, "--max-budget", o->max_budget, "Largest budget of one job");
  AddDurationOption(cmd, "--shutdown-grace", o->shutdown_grace, "Time running jobs get to finish on SIGTERM/SIGINT");
  cmd.add_option("--max-imports", o->max_imports, "ImportResults uploads at once; more get RESOURCE_EXHAUSTED")
      ->capture_default_str()->check(CLI::Range(1, 64));
  cmd.add_option("--import-temp-mib", o->import_temp_mib,
                 "Temporary disk (MiB, next to the database) all uploads together may reserve")
      ->capture_default_str()->check(CLI::Range(int64_t{1}, int64_t{1} << 30));
  AddDurationOption(cmd, "--import-time-limit", o->import_time_limit,
                    "How long an upload may take from its first chunk to the end of its merge, 0 for no limit");
  AddDurationOption(cmd, "--transfer-idle-limit", o->transfer_idle_limit,
                    "How long an export or import may wait on its client before it is ended, 0 for forever");
  cmd.add_option("--port-file", o->port_file, "Write the port actually bound here (for --listen host:0)");
  cmd.add_option("--log-level", o->log_level, "trace, debug, info, warn, error")
      ->capture_default_str()->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}));
  cmd.add_flag("--no-reflection", o->no_reflection,
               "Do not offer gRPC server reflection (never offered with --auth-token-file)");
  cmd.add_flag("--no-gpu", o->no_gpu, "Serve lookups only: refuse tuning even where a GPU is visible");
  cmd.add_option("--cache-dir", o->cache_dir, "Compiled kernels of tuning jobs [$PARALLAX_CACHE_DIR or ~/.cache/parallax]");
  return [o] { return RunServe(*o); };
}

}  // namespace

PLX_REGISTER_COMMAND(serve, 70, "Serve tuned configs and tuning jobs over gRPC", SetupServe);

}  // namespace parallax::cli
