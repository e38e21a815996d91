// `parallax remote get|tune|watch|list|cancel|export|import|health`: a client of
// `parallax serve`. Connection flags (--server, --token-file, --tls-ca, --json) work before
// or after the action.
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "cli_io.h"
#include "cli_options.h"
#include "parallax/service/client.h"
#include "registry.h"
#include "remote_args.h"

namespace parallax::cli {
namespace {

struct RemoteOptions {
  std::string server = "127.0.0.1:50051";
  std::string token_file;
  std::string tls_ca;
  std::string tls_server_name;
  bool json = false;

  ProblemFlags problem;
  DeviceFlags device;
  std::string problems_json;
  double budget = 600;
  std::string strategy;  // "": the server's default (guided), or the resumed job's
  int device_ordinal = -1;
  int64_t resume = 0;
  bool watch = false;
  int64_t job_id = 0;
  bool jobs = false;
  std::string fingerprint;
  std::string problem_key;
  int limit = 0;
  std::string page_token;
  std::string path;
};

// Server-side validation errors are the user's input: exit 2 like local usage errors.
int FailStatus(absl::string_view what, const absl::Status& s) {
  return Fail(absl::IsInvalidArgument(s) ? kExitUsage : kExitFailure,
              absl::StrCat("remote ", what, ": ", absl::StatusCodeToString(s.code()), ": ", s.message()));
}

absl::StatusOr<std::unique_ptr<service::Client>> Connect(const RemoteOptions& o) {
  absl::StatusOr<service::ClientOptions> co =
      service::ClientOptionsFromFiles(o.server, o.token_file, o.tls_ca, o.tls_server_name);
  if (!co.ok()) return co.status();
  return service::Client::Connect(*co);
}

int Watch(service::Client& c, const RemoteOptions& o, int64_t job_id) {
  absl::StatusOr<v1::JobProgress> last = c.WatchJob(job_id, [&](const v1::JobProgress& p) {
    std::cout << (o.json ? ToJson(p, false) : DescribeProgress(p)) << std::endl;
  });
  if (!last.ok()) return FailStatus("watch", last.status());
  return last->state() == v1::JOB_STATE_DONE ? kExitOk : kExitFailure;
}

int RunAction(const std::string& action, const RemoteOptions& o) {
  // What needs no server first: the known GPUs, and the flags of `get`.
  if (action == "get" && o.device.list_devices) return PrintKnownDevices(o.json);
  absl::StatusOr<v1::DeviceFingerprint> device;
  if (action == "get") {
    if (o.problem.mode.empty()) return Fail(kExitUsage, "remote get: --mode is required (decode, prefill or bwd)");
    device = ResolveDevice(o.device);
    if (!device.ok()) return Fail(kExitUsage, device.status().message());
  }
  absl::StatusOr<std::unique_ptr<service::Client>> client = Connect(o);
  if (!client.ok()) return Fail(kExitUsage, client.status().message());
  service::Client& c = **client;

  if (action == "get") {
    v1::GetBestConfigRequest r;
    *r.mutable_device() = *device;
    *r.mutable_problem() = ToProto(o.problem);
    absl::StatusOr<v1::GetBestConfigResponse> resp = c.GetBestConfig(r);
    if (!resp.ok()) return FailStatus(action, resp.status());
    if (o.json) std::cout << ToJson(*resp, true) << "\n";
    else PrintBestConfig(*resp);
    return kExitOk;
  }
  if (action == "tune") {
    v1::SubmitTuningRequest r;
    if (o.resume > 0) {
      r.set_resume_job_id(o.resume);
    } else if (!o.problems_json.empty()) {
      absl::StatusOr<std::vector<v1::Problem>> problems = ProblemsFromJsonFile(o.problems_json);
      if (!problems.ok()) return Fail(kExitUsage, problems.status().message());
      for (v1::Problem& p : *problems) *r.add_problems() = std::move(p);
    } else if (!o.problem.mode.empty()) {
      *r.add_problems() = ToProto(o.problem);
    } else {
      return Fail(kExitUsage, "remote tune: give --mode ... , --problems-json FILE or --resume JOB");
    }
    if (o.budget <= 0) return Fail(kExitUsage, "remote tune: --budget must be above 0");
    if (o.resume == 0 || o.budget != 600) r.set_budget_seconds(o.budget);
    r.set_strategy(o.strategy == "random"       ? v1::STRATEGY_RANDOM
                   : o.strategy == "exhaustive" ? v1::STRATEGY_EXHAUSTIVE
                   : o.strategy == "guided"     ? v1::STRATEGY_GUIDED
                                                : v1::STRATEGY_UNSPECIFIED);
    if (o.device_ordinal >= 0) r.set_device_ordinal(o.device_ordinal);
    absl::StatusOr<v1::SubmitTuningResponse> resp = c.SubmitTuning(r);
    if (!resp.ok()) return FailStatus(action, resp.status());
    if (o.json) std::cout << ToJson(*resp, !o.watch) << "\n";
    else std::cout << "job " << resp->job_id() << " queued (" << resp->queue_position() << " ahead)\n";
    return o.watch ? Watch(c, o, resp->job_id()) : kExitOk;
  }
  if (action == "watch") return Watch(c, o, o.job_id);
  if (action == "cancel") {
    absl::StatusOr<v1::CancelJobResponse> resp = c.CancelJob(o.job_id);
    if (!resp.ok()) return FailStatus(action, resp.status());
    std::cout << (o.json ? ToJson(*resp, true) : DescribeProgress(resp->progress())) << "\n";
    return kExitOk;
  }
  if (action == "list" && o.jobs) {
    v1::ListJobsRequest r;
    r.set_limit(o.limit);
    absl::StatusOr<v1::ListJobsResponse> resp = c.ListJobs(r);
    if (!resp.ok()) return FailStatus(action, resp.status());
    if (o.json) std::cout << ToJson(*resp, true) << "\n";
    else PrintJobs(*resp);
    return kExitOk;
  }
  if (action == "list") {
    v1::ListConfigsRequest r;
    r.set_device_fingerprint(o.fingerprint);
    r.set_problem_key(o.problem_key);
    r.set_page_size(o.limit);
    r.set_page_token(o.page_token);
    absl::StatusOr<v1::ListConfigsResponse> resp = c.ListConfigs(r);
    if (!resp.ok()) return FailStatus(action, resp.status());
    if (o.json) std::cout << ToJson(*resp, true) << "\n";
    else PrintConfigs(*resp);
    return kExitOk;
  }
  if (action == "export") {
    absl::StatusOr<int64_t> bytes = c.ExportResults(o.path);
    if (!bytes.ok()) return FailStatus(action, bytes.status());
    std::cerr << "wrote " << *bytes << " bytes to " << o.path << "\n";
    return kExitOk;
  }
  if (action == "import") {
    absl::StatusOr<v1::ImportResultsResponse> resp = c.ImportResults(o.path);
    if (!resp.ok()) return FailStatus(action, resp.status());
    if (o.json) std::cout << ToJson(*resp, true) << "\n";
    else PrintImport(*resp, o.path);
    return kExitOk;
  }
  // health
  absl::StatusOr<bool> serving = c.CheckHealth();
  if (!serving.ok()) return FailStatus(action, serving.status());
  std::cout << (*serving ? "SERVING" : "NOT_SERVING") << "\n";
  return *serving ? kExitOk : kExitFailure;
}

Action SetupRemote(CLI::App& cmd) {
  auto o = std::make_shared<RemoteOptions>();
  cmd.require_subcommand(1);
  cmd.add_option("--server", o->server, "host:port of `parallax serve`")->capture_default_str();
  cmd.add_option("--token-file", o->token_file, "Bearer token file (as given to serve --auth-token-file)")
      ->check(CLI::ExistingFile);
  cmd.add_option("--tls-ca", o->tls_ca, "PEM roots to verify the server's TLS certificate: use TLS")
      ->check(CLI::ExistingFile);
  cmd.add_option("--tls-server-name", o->tls_server_name, "Name expected in the server certificate");
  cmd.add_flag("--json", o->json, "Print JSON instead of tables and lines");

  auto add = [&](const char* name, const char* help) {
    CLI::App* sub = cmd.add_subcommand(name, help);
    sub->fallthrough();  // connection flags after the action too
    return sub;
  };
  CLI::App* get = add("get", "Best config for a problem on a GPU (this machine's, or --device-name H200; "
                             "--list-devices for the names known)");
  AddProblemFlags(*get, o->problem, false);
  AddDeviceFlags(*get, o->device);
  CLI::App* tune = add("tune", "Submit a tuning job");
  AddProblemFlags(*tune, o->problem, false);
  tune->add_option("--problems-json", o->problems_json, "JSON array of problems to tune together");
  AddDurationOption(*tune, "--budget", o->budget, "Tuning time of the job, as `parallax tune --budget`");
  tune->add_option("--strategy", o->strategy,
                   "guided, exhaustive or random (default: the server's, guided; with --resume the job's)")
      ->check(CLI::IsMember({"guided", "exhaustive", "random"}));
  tune->add_option("--gpu", o->device_ordinal, "Server GPU ordinal (default: any)");
  tune->add_option("--resume", o->resume, "Resume an interrupted, cancelled or failed job");
  tune->add_flag("--watch", o->watch, "Follow the job until it ends");
  CLI::App* watch = add("watch", "Follow a job's progress until it ends");
  watch->add_option("job", o->job_id, "Job id")->required();
  CLI::App* cancel = add("cancel", "Cancel a queued or running job");
  cancel->add_option("job", o->job_id, "Job id")->required();
  CLI::App* list = add("list", "List tuned configs (or --jobs)");
  list->add_flag("--jobs", o->jobs, "List tuning jobs instead");
  list->add_option("--fingerprint", o->fingerprint, "Only this device fingerprint");
  list->add_option("--problem-key", o->problem_key, "Only this problem key");
  list->add_option("--limit", o->limit, "Entries per page (0: server default)");
  list->add_option("--page-token", o->page_token, "Continue a listing");
  CLI::App* exp = add("export", "Download the server's cache as a SQLite file");
  exp->add_option("file", o->path, "Output file (must not exist)")->required();
  CLI::App* imp = add("import", "Merge a cache file into the server's cache");
  imp->add_option("file", o->path, "SQLite cache file")->required()->check(CLI::ExistingFile);
  add("health", "gRPC health check of the Tuner service");

  return [o, &cmd] {
    for (CLI::App* sub : cmd.get_subcommands()) return RunAction(sub->get_name(), *o);
    return Fail(kExitUsage, "remote: an action is required");
  };
}

}  // namespace

PLX_REGISTER_COMMAND(remote, 80, "Talk to a `parallax serve` server (get, tune, watch, list, ...)", SetupRemote);

}  // namespace parallax::cli
