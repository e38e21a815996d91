// What the `parallax fleet` subcommands share (cmd_fleet.cc registers them): the options,
// the fleet directory's files, the plan a tune cuts into shards, each shard's progress and the
// Slurm side. The files:
//   cmd_fleet_io.cc       time stamps, shell quoting, atomic writes, running a command
//   cmd_fleet_plan.cc     the plan (from `tune --dry-run --json`) and the manifest, fleet.json
//   cmd_fleet_shards.cc   each shard's progress, from a private copy of its database
//   cmd_fleet_slurm.cc    squeue / sbatch: job states, array specs, job ids
//   cmd_fleet_scripts.cc  the two batch scripts, tune.sbatch and merge.sbatch
//   cmd_fleet_submit.cc   fleet submit
//   cmd_fleet_status.cc   fleet status
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "cli_io.h"
#include "registry.h"  // exit codes

namespace parallax::cli::fleet {

inline constexpr int kManifestVersion = 1;
inline constexpr char kManifestName[] = "fleet.json";
inline constexpr char kTuneScriptName[] = "tune.sbatch";
inline constexpr char kMergeScriptName[] = "merge.sbatch";
inline constexpr char kMergedMarker[] = "merged";  // written by the merge job when it succeeded

struct FleetOptions {
  std::string dir;
  bool json = false;
  // submit
  int shards = 0;
  std::string db;      // merge target
  std::string server;  // also (or instead) `parallax remote import` into this server
  std::string token_file, tls_ca;
  bool no_merge = false;
  int gpus = 1;
  int cpus_per_task = 0;
  int max_running = 0;
  std::string partition, time_limit, job_name;
  std::vector<std::string> sbatch_args;
  std::string parallax;
  bool dry_run = false, script_only = false, force = false, all = false;
  std::vector<std::string> tune_args;
};

inline int Usage(const std::string& message) { return Fail(kExitUsage, message); }

// ---- small helpers (cmd_fleet_io.cc) ----

std::string NowIso();
std::string IsoFromMs(int64_t ms);
// A word for bash: as it is when it has nothing the shell would read, else single-quoted.
std::string ShellQuote(const std::string& s);
std::string Absolute(const std::string& path);
std::string ShardDb(const std::string& dir, int index);
absl::Status WriteFileAtomically(const std::string& path, const std::string& text);

struct CommandResult {
  int exit_code = -1;  // 127: not found
  std::string out, err;
};

// Runs argv (argv[0] looked up on PATH) with stdin from /dev/null and both outputs captured.
CommandResult RunCommand(const std::vector<std::string>& argv);
std::string FirstLine(const std::string& text);

// ---- the plan and the manifest (cmd_fleet_plan.cc) ----

struct ShardPlanEntry {
  int index = 1;
  std::vector<std::string> buckets;
  double expected_s = 0;
};

struct FleetPlan {
  std::string problem;
  int units_total = 0;
  double expected_total_s = 0;
  std::vector<ShardPlanEntry> shards;  // [0] is shard 1
};

// Flags fleet sets itself on every task; refused among the tune options.
absl::Status CheckTuneArgs(const std::vector<std::string>& args);
// Each shard's buckets, from `tune ARGS --shard I/N --dry-run --json` run in this process.
absl::StatusOr<FleetPlan> PlanFleet(const std::vector<std::string>& tune_args, int count);
nlohmann::json PlanJson(const FleetPlan& plan);

struct Manifest {
  nlohmann::json j;  // as on disk

  int shards() const { return j.value("shards", 0); }
  std::string problem() const { return j.value("problem", ""); }
  std::vector<std::string> planned(int index) const {
    for (const nlohmann::json& s : j.value("plan", nlohmann::json::array()))
      if (s.value("shard", 0) == index) return s.value("buckets", std::vector<std::string>{});
    return {};
  }
  const nlohmann::json* last_submission() const {
    auto it = j.find("submissions");
    if (it == j.end() || !it->is_array() || it->empty()) return nullptr;
    return &it->back();
  }
};

// DIR/fleet.json; none when the file is not there.
absl::StatusOr<std::optional<Manifest>> LoadManifest(const std::string& dir);

// ---- shard progress (cmd_fleet_shards.cc) ----

struct ShardState {
  int index = 1;
  std::string db;
  bool exists = false;
  std::string error;                 // unreadable database
  std::vector<std::string> planned;  // from the manifest
  std::set<std::string> done;        // planned buckets a run finished with a best config
  std::set<std::string> failed;      // finished without one (and not done in another run)
  int64_t measurements = 0;
  int64_t best_configs = 0;
  int runs = 0;
  std::string last_status;  // newest run: running, done, cancelled, interrupted, failed ("" none)
  int64_t last_started_ms = 0, last_finished_ms = 0;
  // Slurm
  std::string slurm_job, slurm_state, slurm_reason;
  bool slurm_checked = false;  // squeue answered for this shard's task of the last submission

  bool complete() const { return exists && error.empty() && failed.empty() && done.size() == planned.size(); }
  std::string state() const {
    if (!error.empty()) return "error";
    if (complete()) return "done";
    if (slurm_state == "RUNNING" || slurm_state == "COMPLETING") return "running";
    if (!exists) return slurm_state == "PENDING" ? "queued" : "waiting";
    if (last_status == "running") {
      // A run record still open: the tune is running, or was killed before it could close it
      // (its task is then no longer running; without squeue that cannot be told).
      if (slurm_checked && slurm_state != "PENDING") return "stopped";
      return slurm_state == "PENDING" ? "queued" : "running";
    }
    if (slurm_state == "PENDING") return "queued";
    if (last_status == "cancelled" || last_status == "interrupted") return "stopped";
    if (last_status == "failed" || !failed.empty()) return "failed";
    if (last_status.empty()) return "waiting";
    return "incomplete";
  }
};

// Every shard of the manifest, read from its database (read-only, from a private copy).
std::vector<ShardState> ReadShards(const std::string& dir, const Manifest& m);

// ---- Slurm (cmd_fleet_slurm.cc) ----

struct SlurmQuery {
  bool available = false;  // squeue ran and answered
  std::string note;        // why not, or its complaint
  std::map<std::string, std::pair<std::string, std::string>> jobs;  // "123_4" / "124" -> (state, reason)
};

// The jobs still known to slurmctld (finished ones for MinJobAge, 5 minutes by default), one
// line per array task.
SlurmQuery QuerySlurm(const std::vector<std::string>& job_ids);
std::vector<std::string> SubmissionJobIds(const nlohmann::json* sub);
void ApplySlurm(const SlurmQuery& q, const nlohmann::json* sub, std::vector<ShardState>& shards);
// Runs of consecutive indices as "a-b": "1-4", "2,5-7"; "%K" appended for max_running K > 0.
std::string ArraySpec(const std::vector<int>& tasks, int max_running);
// "123" or "123;cluster" (sbatch --parsable) -> "123".
absl::StatusOr<std::string> JobIdOf(const CommandResult& r, const std::string& what);

// ---- the batch scripts (cmd_fleet_scripts.cc) ----

struct Scripts {
  std::string tune, merge;
};

Scripts MakeScripts(const FleetOptions& o, const FleetPlan& plan, const std::string& when);

// ---- the subcommands ----

int RunSubmit(FleetOptions o);  // cmd_fleet_submit.cc
int RunStatus(FleetOptions o);  // cmd_fleet_status.cc

}  // namespace parallax::cli::fleet
