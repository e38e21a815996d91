// `parallax fleet submit|status`: one tune's buckets spread over a Slurm cluster.
//
// submit writes two batch scripts into the fleet directory (a shared filesystem) and submits
// them: a job array with one task per shard (`parallax tune --shard I/N --db DIR/shard-I.db`
// plus the tune options after `--`, `--gres=gpu:G` per task) and a job that runs once every
// task ended OK (`--dependency=afterok`) and merges the shard databases into the target with
// `parallax db import` (and/or uploads them to a running `parallax serve`). Submitting the same
// fleet again resumes it: complete shards are left out of the array, the others continue from
// their databases. --dry-run prints the scripts, --script-only writes them, neither submits.
//
// status reads the shard databases (read-only: never created, migrated or written) and the
// fleet's manifest (DIR/fleet.json) and prints each shard's buckets done / planned from its
// run records, plus the Slurm state of its task when squeue answers.
//
// The shards' plan comes from the tune command itself (`tune --dry-run --json --shard I/N`,
// run in this process), so submit, the tasks and status cannot disagree on which buckets a
// shard has. Slurm is reached only through its commands (sbatch, squeue), found on PATH.
#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "cli_io.h"
#include "parallax/cache/rows.h"
#include "parallax/cache/store.h"
#include "parallax/search/shard.h"
#include "registry.h"

namespace parallax::cli {
namespace {

namespace fs = std::filesystem;

constexpr int kManifestVersion = 1;
constexpr char kManifestName[] = "fleet.json";
constexpr char kTuneScriptName[] = "tune.sbatch";
constexpr char kMergeScriptName[] = "merge.sbatch";
constexpr char kMergedMarker[] = "merged";  // written by the merge job when it succeeded

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

// ---- small helpers ----

std::string NowIso() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string IsoFromMs(int64_t ms) {
  const std::time_t t = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// A word for bash: as it is when it has nothing the shell would read, else single-quoted.
std::string ShellQuote(const std::string& s) {
  static const char kPlain[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_./=:,+@%";
  if (!s.empty() && s.find_first_not_of(kPlain) == std::string::npos) return s;
  return absl::StrCat("'", absl::StrReplaceAll(s, {{"'", "'\\''"}}), "'");
}

std::string Absolute(const std::string& path) {
  if (path.empty()) return path;
  std::error_code ec;
  const fs::path p = fs::absolute(path, ec);
  return ec ? path : p.lexically_normal().string();
}

std::string ShardDb(const std::string& dir, int index) { return absl::StrCat(dir, "/shard-", index, ".db"); }

absl::Status WriteFileAtomically(const std::string& path, const std::string& text) {
  const std::string tmp = absl::StrCat(path, ".tmp.", ::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
    out.close();
    if (!out) return absl::PermissionDeniedError(absl::StrCat(tmp, ": cannot write"));
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    fs::remove(tmp, ec);
    return absl::PermissionDeniedError(absl::StrCat(path, ": cannot write (", ec.message(), ")"));
  }
  return absl::OkStatus();
}

struct CommandResult {
  int exit_code = -1;  // 127: not found
  std::string out, err;
};

// Runs argv (argv[0] looked up on PATH) with stdin from /dev/null and both outputs captured.
CommandResult RunCommand(const std::vector<std::string>& argv) {
  CommandResult r;
  int out[2], err[2];
  if (::pipe2(out, O_CLOEXEC) != 0) return r;
  if (::pipe2(err, O_CLOEXEC) != 0) {
    ::close(out[0]);
    ::close(out[1]);
    return r;
  }
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int null = ::open("/dev/null", O_RDONLY);
    if (null >= 0) ::dup2(null, 0);
    ::dup2(out[1], 1);
    ::dup2(err[1], 2);
    ::execvp(args[0], args.data());
    ::_exit(127);
  }
  ::close(out[1]);
  ::close(err[1]);
  if (pid < 0) {
    ::close(out[0]);
    ::close(err[0]);
    r.err = std::strerror(errno);
    return r;
  }
  pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  std::string* sinks[2] = {&r.out, &r.err};
  int open = 2;
  while (open > 0) {
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      char buf[8192];
      const ssize_t n = ::read(fds[i].fd, buf, sizeof(buf));
      if (n > 0) {
        sinks[i]->append(buf, static_cast<size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        --open;
      }
    }
  }
  for (pollfd& f : fds)
    if (f.fd >= 0) ::close(f.fd);
  int st = 0;
  while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  r.exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return r;
}

std::string FirstLine(const std::string& text) {
  std::string s = text.substr(0, text.find('\n'));
  while (!s.empty() && (s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

// ---- the plan, from the tune command itself ----

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
absl::Status CheckTuneArgs(const std::vector<std::string>& args) {
  if (args.empty())
    return absl::InvalidArgumentError(
        "fleet submit needs the tune options after `--`, e.g. `-- --preset qwen3-0.6b` (see parallax tune --help)");
  for (const std::string& a : args) {
    for (const char* own : {"--shard", "--db", "--dry-run", "--json"})
      if (a == own || absl::StartsWith(a, absl::StrCat(own, "=")))
        return absl::InvalidArgumentError(absl::StrCat(
            "fleet submit sets ", own, " itself on every task; leave it out of the tune options after `--`",
            std::string(own) == "--db" ? " (the fleet's target database is fleet submit's own --db)" : ""));
    if (a == "--help" || a == "-h" || a == "--help-all")
      return absl::InvalidArgumentError("for the tune options see `parallax tune --help`");
  }
  return absl::OkStatus();
}

// `tune ARGS --shard I/N --dry-run --json` in this process, its JSON captured: the options
// are parsed and checked by the tune command itself. Its own error message goes to stderr.
absl::StatusOr<nlohmann::json> TuneDryRun(const std::vector<std::string>& tune_args, int index, int count) {
  std::optional<CommandEntry> tune;
  for (const CommandEntry& e : RegisteredCommands())
    if (std::string(e.name) == "tune") tune = e;
  if (!tune) return absl::InternalError("this build has no tune command");
  CLI::App app{"", "parallax"};
  CLI::App* sub = app.add_subcommand("tune", tune->description);
  Action action = tune->setup(*sub);
  std::vector<std::string> args = {"tune"};
  args.insert(args.end(), tune_args.begin(), tune_args.end());
  for (const std::string& a : {std::string("--shard"), absl::StrCat(index, "/", count), std::string("--dry-run"),
                               std::string("--json")})
    args.push_back(a);
  std::reverse(args.begin(), args.end());  // CLI11 takes the arguments last first
  try {
    app.parse(args);
  } catch (const CLI::ParseError& e) {
    return absl::InvalidArgumentError(absl::StrCat("tune options: ", e.what()));
  }
  std::ostringstream captured;
  std::streambuf* old = std::cout.rdbuf(captured.rdbuf());
  int rc;
  try {
    rc = action();
  } catch (...) {
    std::cout.rdbuf(old);
    throw;
  }
  std::cout.rdbuf(old);
  if (rc != kExitOk)
    return absl::InvalidArgumentError(absl::StrCat("the tune options were refused (parallax tune ",
                                                   absl::StrJoin(tune_args, " "), ")"));
  nlohmann::json j = nlohmann::json::parse(captured.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return absl::InternalError("tune --dry-run --json printed no JSON");
  return j;
}

absl::StatusOr<FleetPlan> PlanFleet(const std::vector<std::string>& tune_args, int count) {
  FleetPlan plan;
  for (int i = 1; i <= count; ++i) {
    absl::StatusOr<nlohmann::json> j = TuneDryRun(tune_args, i, count);
    if (!j.ok()) return j.status();
    ShardPlanEntry e;
    e.index = i;
    try {
      plan.problem = j->at("problem").get<std::string>();
      plan.units_total = j->at("units_total").get<int>();
      plan.expected_total_s = j->at("expected_total_s").get<double>();
      e.expected_s = j->at("expected_s").get<double>();
      for (const nlohmann::json& u : j->at("units")) e.buckets.push_back(u.at("bucket").get<std::string>());
    } catch (const nlohmann::json::exception& ex) {
      return absl::InternalError(absl::StrCat("tune --dry-run --json: unexpected output (", ex.what(), ")"));
    }
    plan.shards.push_back(std::move(e));
  }
  return plan;
}

// ---- the manifest (DIR/fleet.json) ----

nlohmann::json PlanJson(const FleetPlan& plan) {
  nlohmann::json shards = nlohmann::json::array();
  for (const ShardPlanEntry& e : plan.shards)
    shards.push_back({{"shard", e.index}, {"buckets", e.buckets}, {"expected_s", e.expected_s}});
  return shards;
}

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

absl::StatusOr<std::optional<Manifest>> LoadManifest(const std::string& dir) {
  const std::string path = absl::StrCat(dir, "/", kManifestName);
  std::error_code ec;
  if (!fs::exists(path, ec)) return std::optional<Manifest>();
  absl::StatusOr<std::string> text = ReadFile(path);
  if (!text.ok()) return text.status();
  nlohmann::json j = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object() || j.value("version", 0) != kManifestVersion || !j.contains("shards") ||
      !j["shards"].is_number_integer() || !j.contains("tune_args") || !j["tune_args"].is_array() ||
      !j.contains("plan") || !j["plan"].is_array())
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": not a fleet manifest this parallax writes (version ", kManifestVersion, ")"));
  return std::optional<Manifest>(Manifest{std::move(j)});
}

// ---- shard progress, from the shard databases' run records ----

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

// A private copy of a shard database and its write-ahead log, to read: the file may be open
// in a tune on another host, and SQLite's WAL index (the -shm file) must never be shared
// between hosts, so the shard's own files are only ever read with plain reads, never locked or
// mapped. The log is copied first: a checkpoint between the two copies then only leaves pages
// in the database that the copied log holds too. A copy taken while the tune writes may miss
// its last transaction (a torn log tail is ignored), which is fine for a progress report.
class Snapshot {
 public:
  ~Snapshot() { Drop(); }
  absl::StatusOr<std::string> Take(const std::string& db) {
    Drop();
    std::error_code ec;
    const fs::path tmp = fs::temp_directory_path(ec);
    std::string tmpl = ((ec ? fs::path("/tmp") : tmp) / "parallax-fleet-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr)
      return absl::UnavailableError(absl::StrCat("cannot make a temporary directory: ", std::strerror(errno)));
    dir_ = tmpl;
    const std::string copy = absl::StrCat(dir_, "/shard.db");
    if (fs::exists(db + "-wal", ec)) fs::copy_file(db + "-wal", copy + "-wal", ec);  // gone meanwhile: fine
    ec.clear();
    fs::copy_file(db, copy, ec);
    if (ec) return absl::UnavailableError(absl::StrCat(db, ": cannot read (", ec.message(), ")"));
    return copy;
  }

 private:
  void Drop() {
    std::error_code ec;
    if (!dir_.empty()) fs::remove_all(dir_, ec);
    dir_.clear();
  }
  std::string dir_;
};

// Which buckets a shard's runs finished. A run writes a bucket into its progress record when
// the bucket's unit ends, so every bucket in a done, failed or still-open run (one killed
// outright never closes its record) is finished. A run stopped by a signal (cancelled,
// interrupted) also records the unit it was cut off in: the bucket it measured last, which
// does not count (nor a bucket it recorded without a best config).
void ReadShard(const std::string& fleet_problem, const search::ShardSpec& spec, ShardState& s) {
  std::error_code ec;
  s.exists = fs::exists(s.db, ec);
  if (!s.exists) return;
  Snapshot snap;
  absl::StatusOr<std::vector<cache::RunInfo>> runs;
  absl::StatusOr<std::vector<cache::Measurement>> ms;
  absl::StatusOr<std::vector<cache::BestConfig>> best;
  absl::Status read;
  // A copy torn by a checkpoint under way fails the integrity check on open: take another.
  for (int attempt = 0; attempt < 3; ++attempt) {
    if (attempt > 0) ::usleep(200 * 1000);
    absl::StatusOr<std::string> copy = snap.Take(s.db);
    if (!copy.ok()) {
      read = copy.status();
      continue;
    }
    cache::StoreOptions so;
    so.read_only = true;  // never created, migrated or written (and only a copy, at that)
    absl::StatusOr<std::unique_ptr<cache::Store>> st = cache::Store::Open(*copy, so);
    if (!st.ok()) {
      read = st.status();
      continue;
    }
    runs = (*st)->ListRuns();
    ms = (*st)->ListMeasurements();
    best = (*st)->ListBestConfigs();
    read = !runs.ok() ? runs.status() : !ms.ok() ? ms.status() : best.status();
    if (read.ok()) break;
  }
  if (!read.ok()) {
    s.error = absl::StrCat(s.db, ": ", read.message());
    return;
  }
  s.measurements = static_cast<int64_t>(ms->size());
  s.best_configs = static_cast<int64_t>(best->size());
  std::map<int64_t, std::string> last_bucket;  // run id -> bucket of its last measurement
  for (const cache::Measurement& m : *ms)
    if (m.run_id) last_bucket[*m.run_id] = m.bucket;
  const std::set<std::string> planned(s.planned.begin(), s.planned.end());
  const std::string shard = search::ToString(spec);
  const cache::RunInfo* newest = nullptr;
  for (const cache::RunInfo& r : *runs) {
    if (!r.params.is_object() || r.params.value("shard", "") != shard ||
        (!fleet_problem.empty() && r.params.value("problem_key", "") != fleet_problem))
      continue;
    ++s.runs;
    if (newest == nullptr || r.started_at > newest->started_at ||
        (r.started_at == newest->started_at && r.id > newest->id))
      newest = &r;
    const bool stopped = r.status == cache::RunStatus::kCancelled || r.status == cache::RunStatus::kInterrupted;
    const nlohmann::json buckets = r.progress.is_object() ? r.progress.value("buckets", nlohmann::json::object())
                                                          : nlohmann::json::object();
    if (!buckets.is_object()) continue;
    for (const auto& [bucket, u] : buckets.items()) {
      if (!planned.count(bucket) || !u.is_object()) continue;
      const bool has_best = u.value("best", "") != "";
      if (stopped) {
        auto cut = last_bucket.find(r.id);
        if (!has_best || (cut != last_bucket.end() && cut->second == bucket)) continue;
      }
      if (has_best && u.value("error", "").empty()) {
        s.done.insert(bucket);
        s.failed.erase(bucket);
      } else if (!s.done.count(bucket)) {
        s.failed.insert(bucket);
      }
    }
  }
  if (newest != nullptr) {
    s.last_status = std::string(cache::ToString(newest->status));
    s.last_started_ms = newest->started_at;
    s.last_finished_ms = newest->finished_at.value_or(0);
    // The other GPUs of the same tune (one run per GPU, started together): open if any is.
    for (const cache::RunInfo& r : *runs)
      if (r.status == cache::RunStatus::kRunning && r.params.is_object() && r.params.value("shard", "") == shard &&
          r.started_at + 60000 >= newest->started_at)
        s.last_status = "running";
  }
}

std::vector<ShardState> ReadShards(const std::string& dir, const Manifest& m) {
  std::vector<ShardState> out;
  const int n = m.shards();
  for (int i = 1; i <= n; ++i) {
    ShardState s;
    s.index = i;
    s.db = ShardDb(dir, i);
    s.planned = m.planned(i);
    ReadShard(m.problem(), search::ShardSpec{i, n}, s);
    out.push_back(std::move(s));
  }
  return out;
}

// ---- Slurm ----

struct SlurmQuery {
  bool available = false;  // squeue ran and answered
  std::string note;        // why not, or its complaint
  std::map<std::string, std::pair<std::string, std::string>> jobs;  // "123_4" / "124" -> (state, reason)
};

// The jobs still known to slurmctld (finished ones for MinJobAge, 5 minutes by default), one
// line per array task.
SlurmQuery QuerySlurm(const std::vector<std::string>& job_ids) {
  SlurmQuery q;
  if (job_ids.empty()) {
    q.note = "nothing submitted";
    return q;
  }
  const CommandResult r =
      RunCommand({"squeue", "--noheader", "--array", "--states=all", "--format=%i|%T|%r",
                  absl::StrCat("--jobs=", absl::StrJoin(job_ids, ","))});
  if (r.exit_code == 127) {
    q.note = "squeue not found: Slurm states not shown";
    return q;
  }
  if (r.exit_code != 0) {
    // Jobs long gone make squeue complain "Invalid job id specified": nothing in the queue.
    if (absl::StrContains(r.err, "Invalid job id")) {
      q.available = true;
      return q;
    }
    q.note = absl::StrCat("squeue failed: ", FirstLine(r.err.empty() ? r.out : r.err));
    return q;
  }
  q.available = true;
  for (absl::string_view line : absl::StrSplit(r.out, '\n', absl::SkipWhitespace())) {
    std::vector<std::string> f = absl::StrSplit(line, '|');
    if (f.size() >= 3) q.jobs[f[0]] = {f[1], f[2]};
  }
  return q;
}

std::vector<std::string> SubmissionJobIds(const nlohmann::json* sub) {
  std::vector<std::string> ids;
  if (sub == nullptr) return ids;
  for (const char* k : {"array_job", "merge_job"})
    if (sub->contains(k) && (*sub)[k].is_string() && !(*sub)[k].get<std::string>().empty())
      ids.push_back((*sub)[k].get<std::string>());
  return ids;
}

void ApplySlurm(const SlurmQuery& q, const nlohmann::json* sub, std::vector<ShardState>& shards) {
  if (sub == nullptr) return;
  const std::string array = sub->value("array_job", "");
  if (array.empty()) return;
  const std::vector<int> tasks = sub->value("tasks", std::vector<int>{});
  for (ShardState& s : shards) {
    s.slurm_checked = q.available && std::find(tasks.begin(), tasks.end(), s.index) != tasks.end();
    const std::string id = absl::StrCat(array, "_", s.index);
    if (auto it = q.jobs.find(id); it != q.jobs.end()) {
      s.slurm_job = id;
      s.slurm_state = it->second.first;
      s.slurm_reason = it->second.second;
    }
  }
}

// ---- the batch scripts ----

struct Scripts {
  std::string tune, merge;
};

std::string JobName(const FleetOptions& o) {
  if (!o.job_name.empty()) return o.job_name;
  std::string base = fs::path(o.dir).filename().string();
  if (base.empty()) base = "fleet";
  return absl::StrCat("plx-", base);
}

// Tune options one per line: an option and the values that follow it.
std::string TuneArgLines(const std::vector<std::string>& args) {
  std::string out;
  for (size_t i = 0; i < args.size(); ++i) {
    const bool starts_option = absl::StartsWith(args[i], "-");
    if (i == 0 || starts_option) absl::StrAppend(&out, " \\\n  ");
    else absl::StrAppend(&out, " ");
    absl::StrAppend(&out, ShellQuote(args[i]));
  }
  return out;
}

Scripts MakeScripts(const FleetOptions& o, const FleetPlan& plan, const std::string& when) {
  const int n = o.shards;
  const std::string name = JobName(o);
  const std::string common_head = absl::StrCat(
      "set -euo pipefail\n", "parallax=", ShellQuote(o.parallax), "\n", "fleet_dir=", ShellQuote(o.dir), "\n",
      "shards=", n, "\n");
  std::string sb;  // options both jobs share
  if (!o.partition.empty()) absl::StrAppend(&sb, "#SBATCH --partition=", o.partition, "\n");
  for (const std::string& a : o.sbatch_args) absl::StrAppend(&sb, "#SBATCH ", a, "\n");

  Scripts s;
  s.tune = absl::StrCat(
      "#!/bin/bash\n",
      "# Parallax fleet tune, written by `parallax fleet submit` on ", when, ".\n",
      "#   problem ", plan.problem, ", ", plan.units_total, " bucket(s) in ", n, " shard(s)\n",
      "# One Slurm array task per shard: task I tunes shard I/", n, " into ", o.dir, "/shard-I.db.\n",
      "# Submitting the fleet again resumes it: a shard's database keeps every measurement, so a\n",
      "# task killed part way loses nothing, and complete shards are left out.\n",
      "# Progress: parallax fleet status --dir ", ShellQuote(o.dir), "\n",
      "#SBATCH --job-name=", name, "-tune\n",
      "#SBATCH --array=1-", n, o.max_running > 0 ? absl::StrCat("%", o.max_running) : "", "\n",
      "#SBATCH --ntasks=1\n",
      o.gpus > 0 ? absl::StrCat("#SBATCH --gres=gpu:", o.gpus, "\n") : "",
      o.cpus_per_task > 0 ? absl::StrCat("#SBATCH --cpus-per-task=", o.cpus_per_task, "\n") : "",
      o.time_limit.empty() ? "" : absl::StrCat("#SBATCH --time=", o.time_limit, "\n"),
      sb,
      "#SBATCH --output=", o.dir, "/logs/shard-%a.log\n",
      "#SBATCH --open-mode=append\n",
      common_head,
      "shard=${SLURM_ARRAY_TASK_ID:?submit this script with sbatch as a job array, one task per shard: 1-", n, "}\n",
      "echo \"parallax fleet: shard $shard/$shards on $(hostname), job ${SLURM_JOB_ID:-?}, GPUs "
      "${CUDA_VISIBLE_DEVICES:-none}, $(date -u +%FT%TZ)\"\n",
      "exec \"$parallax\" tune --shard \"$shard/$shards\" --db \"$fleet_dir/shard-$shard.db\"",
      TuneArgLines(o.tune_args), "\n");

  std::string merge_body;
  if (!o.db.empty())
    absl::StrAppend(&merge_body, "target=", ShellQuote(o.db), "\n");
  std::string remote;
  if (!o.server.empty()) {
    remote = absl::StrCat("\"$parallax\" remote --server ", ShellQuote(o.server));
    if (!o.token_file.empty()) absl::StrAppend(&remote, " --token-file ", ShellQuote(o.token_file));
    if (!o.tls_ca.empty()) absl::StrAppend(&remote, " --tls-ca ", ShellQuote(o.tls_ca));
  }
  absl::StrAppend(&merge_body, "for shard in $(seq 1 \"$shards\"); do\n",
                  "  echo \"parallax fleet: merging shard $shard/$shards ($(date -u +%FT%TZ))\"\n");
  if (!o.db.empty())
    absl::StrAppend(&merge_body, "  \"$parallax\" db import \"$fleet_dir/shard-$shard.db\" --db \"$target\"\n");
  if (!remote.empty()) absl::StrAppend(&merge_body, "  ", remote, " import \"$fleet_dir/shard-$shard.db\"\n");
  absl::StrAppend(&merge_body, "done\n");
  if (!o.db.empty()) absl::StrAppend(&merge_body, "\"$parallax\" db verify --db \"$target\"\n");
  absl::StrAppend(&merge_body, "date -u +%FT%TZ > \"$fleet_dir/", kMergedMarker, "\"\n");

  std::string into;
  if (!o.db.empty()) into = absl::StrCat("into ", o.db, " (`parallax db import`, then `db verify`)");
  if (!o.server.empty())
    absl::StrAppend(&into, into.empty() ? "" : "\n# and ", "into the `parallax serve` at ", o.server,
                    " (`parallax remote import`)");
  s.merge = absl::StrCat(
      "#!/bin/bash\n",
      "# Parallax fleet merge, written by `parallax fleet submit` on ", when, ".\n",
      "# Runs once every shard task ended OK (sbatch --dependency=afterok:<array job>) and merges\n",
      "# the ", n, " shard database(s) ", into, ".\n",
      "# Importing a shard again adds nothing twice, so this job may be rerun at will.\n",
      "#SBATCH --job-name=", name, "-merge\n",
      "#SBATCH --ntasks=1\n",
      sb,
      "#SBATCH --output=", o.dir, "/logs/merge.log\n",
      "#SBATCH --open-mode=append\n",
      common_head, merge_body);
  return s;
}

// ---- submit ----

std::string ArraySpec(const std::vector<int>& tasks, int max_running) {
  // Runs of consecutive indices as "a-b": "1-4", "2,5-7".
  std::vector<std::string> parts;
  for (size_t i = 0; i < tasks.size();) {
    size_t j = i;
    while (j + 1 < tasks.size() && tasks[j + 1] == tasks[j] + 1) ++j;
    parts.push_back(i == j ? absl::StrCat(tasks[i]) : absl::StrCat(tasks[i], "-", tasks[j]));
    i = j + 1;
  }
  return absl::StrCat(absl::StrJoin(parts, ","), max_running > 0 ? absl::StrCat("%", max_running) : "");
}

// "123" or "123;cluster" (sbatch --parsable) -> "123".
absl::StatusOr<std::string> JobIdOf(const CommandResult& r, const std::string& what) {
  if (r.exit_code == 127) return absl::FailedPreconditionError("sbatch not found on PATH: is Slurm's client installed "
                                                               "here? (--dry-run / --script-only need no Slurm)");
  if (r.exit_code != 0)
    return absl::UnavailableError(absl::StrCat("sbatch refused the ", what, ": ", FirstLine(r.err.empty() ? r.out : r.err)));
  const std::string id = FirstLine(r.out).substr(0, FirstLine(r.out).find(';'));
  int64_t n;
  if (!absl::SimpleAtoi(id, &n)) return absl::UnavailableError(absl::StrCat("sbatch printed no job id: ", FirstLine(r.out)));
  return id;
}

int Usage(const std::string& message) { return Fail(kExitUsage, message); }

int RunSubmit(FleetOptions o) {
  if (o.dir.empty()) return Usage("fleet submit needs --dir DIR: the fleet's directory on a filesystem every node sees");
  if (o.shards < 1 || o.shards > search::kMaxShards)
    return Usage(absl::StrCat("fleet submit needs --shards N with 1 <= N <= ", search::kMaxShards));
  if (o.dry_run && o.script_only) return Usage("--dry-run and --script-only do not go together");
  if (o.no_merge && (!o.db.empty() || !o.server.empty()))
    return Usage("--no-merge leaves the shard databases as they are: drop --db / --server");
  if (!o.no_merge && o.db.empty() && o.server.empty())
    return Usage("fleet submit needs --db PATH (the target database the merge job imports the shards into), "
                 "--server HOST:PORT (a `parallax serve` to import them into), or --no-merge");
  if (o.server.empty() && (!o.token_file.empty() || !o.tls_ca.empty()))
    return Usage("--token-file and --tls-ca go with --server");
  if (o.gpus < 0) return Usage("--gpus must be 0 or more");
  if (absl::Status s = CheckTuneArgs(o.tune_args); !s.ok()) return Usage(std::string(s.message()));
  for (const std::string& a : o.sbatch_args)
    if (!absl::StartsWith(a, "-") || absl::StartsWith(a, "--array") || absl::StartsWith(a, "--dependency") ||
        absl::StartsWith(a, "--output") || absl::StartsWith(a, "--job-name") || absl::StartsWith(a, "--gres"))
      return Usage(absl::StrCat("--sbatch-arg ", a, ": give sbatch options in their --name=value form; --array, "
                                "--dependency, --output, --job-name and --gres are fleet submit's own "
                                "(--shards, --max-running, --job-name, --gpus)"));
  o.dir = Absolute(o.dir);
  o.db = Absolute(o.db);
  o.token_file = Absolute(o.token_file);
  o.tls_ca = Absolute(o.tls_ca);
  o.parallax = Absolute(o.parallax.empty() ? SelfPath() : o.parallax);
  while (o.dir.size() > 1 && o.dir.back() == '/') o.dir.pop_back();

  absl::StatusOr<FleetPlan> plan = PlanFleet(o.tune_args, o.shards);
  if (!plan.ok()) return Usage(std::string(plan.status().message()));

  absl::StatusOr<std::optional<Manifest>> old = LoadManifest(o.dir);
  if (!old.ok()) return Usage(std::string(old.status().message()));
  nlohmann::json manifest;
  std::vector<int> tasks, complete;
  if (old->has_value()) {
    const Manifest& m = **old;
    bool same_plan = true;
    for (const ShardPlanEntry& e : plan->shards) same_plan = same_plan && m.planned(e.index) == e.buckets;
    if (m.shards() != o.shards || m.j["tune_args"] != nlohmann::json(o.tune_args) || m.problem() != plan->problem)
      return Usage(absl::StrCat(o.dir, " holds another fleet (", m.shards(), " shard(s) of tune ",
                                m.j["tune_args"].dump(), "); a fleet resumes only with the same --shards and tune "
                                "options: give this one another --dir"));
    if (!same_plan)
      return Usage(absl::StrCat(o.dir, ": this parallax cuts the same tune into other shards than the one that "
                                "submitted the fleet (another version?); finish it with that one, or use another --dir"));
    manifest = m.j;
    const std::vector<ShardState> shards = ReadShards(o.dir, m);
    for (const ShardState& s : shards) {
      if (!s.error.empty()) return Fail(kExitFailure, absl::StrCat(s.db, ": ", s.error));
      (s.complete() && !o.all ? complete : tasks).push_back(s.index);
    }
    // Two tunes must not write one shard database: refuse while the last submission is queued.
    if (!o.dry_run && !o.script_only && !o.force) {
      const nlohmann::json* last = m.last_submission();
      const SlurmQuery q = QuerySlurm(SubmissionJobIds(last));
      std::vector<std::string> live;
      for (const auto& [id, st] : q.jobs)
        if (st.first == "PENDING" || st.first == "RUNNING" || st.first == "CONFIGURING" ||
            st.first == "COMPLETING" || st.first == "SUSPENDED" || st.first == "REQUEUED")
          live.push_back(absl::StrCat(id, " ", st.first));
      if (!live.empty())
        return Usage(absl::StrCat("this fleet's last submission is still in the queue (", absl::StrJoin(live, ", "),
                                  "): wait for it, scancel it, or pass --force"));
    }
  } else {
    manifest = {{"version", kManifestVersion},
                {"created", NowIso()},
                {"problem", plan->problem},
                {"shards", o.shards},
                {"units_total", plan->units_total},
                {"expected_total_s", plan->expected_total_s},
                {"tune_args", o.tune_args},
                {"plan", PlanJson(*plan)},
                {"submissions", nlohmann::json::array()}};
    for (int i = 1; i <= o.shards; ++i) tasks.push_back(i);
  }
  manifest["target_db"] = o.db.empty() ? nlohmann::json() : nlohmann::json(o.db);
  manifest["server"] = o.server.empty() ? nlohmann::json() : nlohmann::json(o.server);
  manifest["parallax"] = o.parallax;

  const std::string when = NowIso();
  const Scripts scripts = MakeScripts(o, *plan, when);
  const std::string tune_path = absl::StrCat(o.dir, "/", kTuneScriptName);
  const std::string merge_path = absl::StrCat(o.dir, "/", kMergeScriptName);
  const std::string array = ArraySpec(tasks, o.max_running);
  std::vector<std::string> commands;
  if (!tasks.empty())
    commands.push_back(absl::StrCat("array=$(sbatch --parsable", tasks.size() == size_t(o.shards) ? "" : absl::StrCat(" --array=", array),
                                    " ", ShellQuote(tune_path), ")"));
  if (!o.no_merge)
    commands.push_back(absl::StrCat("sbatch --parsable",
                                    tasks.empty() ? "" : " --dependency=afterok:${array%;*} --kill-on-invalid-dep=yes",
                                    " ", ShellQuote(merge_path)));

  if (o.dry_run) {
    if (o.json) {
      std::cout << nlohmann::json({{"dir", o.dir},
                                   {"problem", plan->problem},
                                   {"shards", o.shards},
                                   {"tasks", tasks},
                                   {"complete", complete},
                                   {"plan", PlanJson(*plan)},
                                   {"tune_script", scripts.tune},
                                   {"merge_script", o.no_merge ? nlohmann::json() : nlohmann::json(scripts.merge)},
                                   {"commands", commands}})
                       .dump(2)
                << "\n";
      return kExitOk;
    }
    std::cout << "# ---- " << tune_path << " (not written: --dry-run) ----\n" << scripts.tune;
    if (!o.no_merge) std::cout << "# ---- " << merge_path << " (not written: --dry-run) ----\n" << scripts.merge;
    std::cout << "# ---- would submit ----\n";
    if (!complete.empty())
      std::cout << "# complete, left out: shard(s) " << absl::StrJoin(complete, ",") << " of " << o.shards << "\n";
    for (const std::string& c : commands) std::cout << c << "\n";
    return kExitOk;
  }

  std::error_code ec;
  fs::create_directories(absl::StrCat(o.dir, "/logs"), ec);
  if (ec) return Fail(kExitFailure, absl::StrCat(o.dir, "/logs: cannot create (", ec.message(), ")"));
  if (absl::Status s = WriteFileAtomically(tune_path, scripts.tune); !s.ok()) return Fail(kExitFailure, s.message());
  if (!o.no_merge)
    if (absl::Status s = WriteFileAtomically(merge_path, scripts.merge); !s.ok()) return Fail(kExitFailure, s.message());
  const std::string manifest_path = absl::StrCat(o.dir, "/", kManifestName);

  if (o.script_only) {
    if (absl::Status s = WriteFileAtomically(manifest_path, manifest.dump(2) + "\n"); !s.ok())
      return Fail(kExitFailure, s.message());
    if (o.json) {
      std::cout << nlohmann::json({{"dir", o.dir}, {"tune_script", tune_path},
                                   {"merge_script", o.no_merge ? nlohmann::json() : nlohmann::json(merge_path)},
                                   {"tasks", tasks}, {"complete", complete}, {"commands", commands}})
                       .dump(2)
                << "\n";
    } else {
      std::cout << "# wrote " << tune_path << (o.no_merge ? "" : absl::StrCat(" and ", merge_path))
                << "; submit them with:\n";
      for (const std::string& c : commands) std::cout << c << "\n";
    }
    return kExitOk;
  }

  nlohmann::json submission = {{"at", when}, {"tasks", tasks}, {"complete", complete}};
  std::string array_job;
  if (!tasks.empty()) {
    std::vector<std::string> argv = {"sbatch", "--parsable"};
    if (tasks.size() != size_t(o.shards)) argv.push_back(absl::StrCat("--array=", array));
    argv.push_back(tune_path);
    absl::StatusOr<std::string> id = JobIdOf(RunCommand(argv), "shard array");
    if (!id.ok()) return Fail(kExitFailure, id.status().message());
    array_job = *id;
    submission["array_job"] = array_job;
  }
  std::string merge_job;
  std::string merge_error;
  if (!o.no_merge) {
    std::vector<std::string> argv = {"sbatch", "--parsable"};
    if (!array_job.empty()) {
      argv.push_back(absl::StrCat("--dependency=afterok:", array_job));
      argv.push_back("--kill-on-invalid-dep=yes");  // a failed shard cancels the merge
    }
    argv.push_back(merge_path);
    absl::StatusOr<std::string> id = JobIdOf(RunCommand(argv), "merge job");
    if (id.ok()) {
      merge_job = *id;
      submission["merge_job"] = merge_job;
    } else {
      merge_error = std::string(id.status().message());
    }
  }
  manifest["submissions"].push_back(submission);
  if (absl::Status s = WriteFileAtomically(manifest_path, manifest.dump(2) + "\n"); !s.ok())
    return Fail(kExitFailure, absl::StrCat(s.message(), " (submitted: array job ", array_job.empty() ? "-" : array_job,
                                           ", merge job ", merge_job.empty() ? "-" : merge_job, ")"));
  if (o.json) {
    std::cout << nlohmann::json({{"dir", o.dir},
                                 {"problem", plan->problem},
                                 {"shards", o.shards},
                                 {"tasks", tasks},
                                 {"complete", complete},
                                 {"array_job", array_job.empty() ? nlohmann::json() : nlohmann::json(array_job)},
                                 {"merge_job", merge_job.empty() ? nlohmann::json() : nlohmann::json(merge_job)},
                                 {"tune_script", tune_path},
                                 {"merge_script", o.no_merge ? nlohmann::json() : nlohmann::json(merge_path)}})
                     .dump(2)
              << "\n";
  } else {
    if (!array_job.empty())
      std::cout << absl::StrFormat("# submitted job array %s: shard(s) %s of %d (%s, %s)\n", array_job,
                                   ArraySpec(tasks, 0), o.shards, plan->problem, tune_path);
    if (!complete.empty())
      std::cout << absl::StrFormat("# complete, left out: shard(s) %s\n", ArraySpec(complete, 0));
    if (!merge_job.empty())
      std::cout << absl::StrFormat("# submitted merge job %s%s into %s\n", merge_job,
                                   array_job.empty() ? "" : absl::StrCat(" (after ", array_job, " ends OK)"),
                                   !o.db.empty() ? o.db : o.server);
    std::cout << "# progress: parallax fleet status --dir " << ShellQuote(o.dir) << "\n";
  }
  if (!merge_error.empty())
    return Fail(kExitFailure, absl::StrCat(merge_error, "; the shards are submitted (job ", array_job,
                                           "): submit the merge by hand: sbatch --dependency=afterok:", array_job,
                                           " ", merge_path));
  return kExitOk;
}

// ---- status ----

int RunStatus(FleetOptions o) {
  if (o.dir.empty()) return Usage("fleet status needs --dir DIR (the directory given to fleet submit)");
  o.dir = Absolute(o.dir);
  while (o.dir.size() > 1 && o.dir.back() == '/') o.dir.pop_back();
  absl::StatusOr<std::optional<Manifest>> m = LoadManifest(o.dir);
  if (!m.ok()) return Usage(std::string(m.status().message()));
  if (!m->has_value())
    return Usage(absl::StrCat(o.dir, ": no fleet there (no ", kManifestName, "; `parallax fleet submit` writes it)"));
  const Manifest& man = **m;
  std::vector<ShardState> shards = ReadShards(o.dir, man);
  const nlohmann::json* last = man.last_submission();
  const SlurmQuery q = QuerySlurm(SubmissionJobIds(last));
  ApplySlurm(q, last, shards);
  std::string merge_job, merge_state, merge_reason;
  if (last != nullptr && last->contains("merge_job")) {
    merge_job = last->value("merge_job", "");
    if (auto it = q.jobs.find(merge_job); it != q.jobs.end()) {
      merge_state = it->second.first;
      merge_reason = it->second.second;
    }
  }
  std::string merged_at;
  if (absl::StatusOr<std::string> t = ReadFile(absl::StrCat(o.dir, "/", kMergedMarker)); t.ok()) merged_at = FirstLine(*t);

  int planned = 0, done = 0, failed = 0, complete = 0, errors = 0;
  for (const ShardState& s : shards) {
    planned += static_cast<int>(s.planned.size());
    done += static_cast<int>(s.done.size());
    failed += static_cast<int>(s.failed.size());
    complete += s.complete();
    errors += !s.error.empty();
  }
  const std::string target = man.j.value("target_db", nlohmann::json()).is_string() ? man.j["target_db"].get<std::string>() : "";

  if (o.json) {
    nlohmann::json list = nlohmann::json::array();
    for (const ShardState& s : shards) {
      nlohmann::json j = {{"shard", search::ToString(search::ShardSpec{s.index, man.shards()})},
                          {"index", s.index},
                          {"db", s.db},
                          {"exists", s.exists},
                          {"state", s.state()},
                          {"complete", s.complete()},
                          {"buckets_planned", s.planned.size()},
                          {"buckets_done", s.done.size()},
                          {"buckets_failed", s.failed.size()},
                          {"planned", s.planned},
                          {"done", std::vector<std::string>(s.done.begin(), s.done.end())},
                          {"failed", std::vector<std::string>(s.failed.begin(), s.failed.end())},
                          {"measurements", s.measurements},
                          {"best_configs", s.best_configs},
                          {"runs", s.runs},
                          {"last_run", s.last_status.empty() ? nlohmann::json()
                                                             : nlohmann::json({{"status", s.last_status},
                                                                               {"started", IsoFromMs(s.last_started_ms)},
                                                                               {"finished", s.last_finished_ms > 0
                                                                                                ? nlohmann::json(IsoFromMs(s.last_finished_ms))
                                                                                                : nlohmann::json()}})},
                          {"slurm", s.slurm_state.empty() ? nlohmann::json()
                                                          : nlohmann::json({{"job", s.slurm_job},
                                                                            {"state", s.slurm_state},
                                                                            {"reason", s.slurm_reason}})}};
      if (!s.error.empty()) j["error"] = s.error;
      list.push_back(std::move(j));
    }
    nlohmann::json out = {
        {"dir", o.dir},
        {"problem", man.problem()},
        {"shards", man.shards()},
        {"tune_args", man.j["tune_args"]},
        {"target_db", target.empty() ? nlohmann::json() : nlohmann::json(target)},
        {"buckets_planned", planned},
        {"buckets_done", done},
        {"buckets_failed", failed},
        {"shards_complete", complete},
        {"complete", complete == man.shards()},
        {"last_submission", last != nullptr ? *last : nlohmann::json()},
        {"slurm", {{"available", q.available}, {"note", q.note}}},
        {"merge", {{"job", merge_job.empty() ? nlohmann::json() : nlohmann::json(merge_job)},
                   {"state", merge_state.empty() ? nlohmann::json() : nlohmann::json(merge_state)},
                   {"reason", merge_reason.empty() ? nlohmann::json() : nlohmann::json(merge_reason)},
                   {"merged_at", merged_at.empty() ? nlohmann::json() : nlohmann::json(merged_at)}}},
        {"shard_status", list}};
    std::cout << out.dump(2) << "\n";
    return errors > 0 ? kExitFailure : kExitOk;
  }

  std::cout << absl::StrFormat("# fleet %s: %s, %d shard(s), %d bucket(s)%s\n", o.dir, man.problem(), man.shards(),
                               planned, target.empty() ? "" : absl::StrCat(", merged into ", target));
  if (last != nullptr) {
    std::cout << absl::StrFormat("# last submitted %s:%s%s\n", last->value("at", "?"),
                                 last->value("array_job", "").empty()
                                     ? std::string(" no shard to run")
                                     : absl::StrCat(" job array ", last->value("array_job", ""), " (shards ",
                                                    ArraySpec(last->value("tasks", std::vector<int>{}), 0), ")"),
                                 merge_job.empty() ? "" : absl::StrCat(", merge job ", merge_job));
  } else {
    std::cout << "# not submitted yet (written with --script-only)\n";
  }
  std::cout << absl::StrFormat("# %-9s %-10s %9s %7s %9s %5s  %-24s %s\n", "shard", "state", "buckets", "failed",
                               "measured", "best", "slurm", "database");
  for (const ShardState& s : shards) {
    const std::string slurm =
        s.slurm_state.empty() ? "-"
                              : absl::StrCat(s.slurm_job, " ", s.slurm_state,
                                             s.slurm_state == "PENDING" && !s.slurm_reason.empty() && s.slurm_reason != "None"
                                                 ? absl::StrCat(" (", s.slurm_reason, ")")
                                                 : "");
    std::cout << absl::StrFormat(
        "  %-9s %-10s %9s %7d %9s %5s  %-24s %s%s\n", search::ToString(search::ShardSpec{s.index, man.shards()}),
        s.state(), absl::StrCat(s.done.size(), "/", s.planned.size()), s.failed.size(),
        s.exists ? absl::StrCat(s.measurements) : "-", s.exists ? absl::StrCat(s.best_configs) : "-", slurm,
        fs::path(s.db).filename().string(), s.exists ? "" : " (not yet)");
    if (!s.error.empty()) std::cout << "      error: " << s.error << "\n";
  }
  std::cout << absl::StrFormat("# %d/%d bucket(s) done, %d/%d shard(s) complete", done, planned, complete,
                               man.shards());
  if (!merge_job.empty())
    std::cout << absl::StrFormat("; merge job %s %s", merge_job,
                                 merge_state.empty() ? "(no longer in the queue)"
                                                     : absl::StrCat(merge_state, merge_reason.empty() || merge_reason == "None"
                                                                                     ? ""
                                                                                     : absl::StrCat(" (", merge_reason, ")")));
  if (!merged_at.empty()) std::cout << "; last merged " << merged_at;
  std::cout << "\n";
  if (!q.available && !q.note.empty()) std::cout << "# " << q.note << "\n";
  return errors > 0 ? kExitFailure : kExitOk;
}

Action SetupFleet(CLI::App& cmd) {
  auto o = std::make_shared<FleetOptions>();
  cmd.require_subcommand(1);
  cmd.footer(
      "A fleet is one tune's buckets in N shards, one Slurm array task each, in a directory every node\n"
      "sees; a dependent job merges the shard databases. See docs/fleet.md, \"Production setup on Slurm\".");

  CLI::App* submit = cmd.add_subcommand(
      "submit", "Write the batch scripts of a fleet and submit them: a job array (one task per shard) and a merge job");
  submit->add_option("--shards", o->shards, "Number of shards N (one array task each)")->required();
  submit->add_option("--dir", o->dir,
                     "Fleet directory on a filesystem the compute nodes share: scripts, fleet.json, "
                     "shard-I.db, logs/ (created)")
      ->required()->type_name("DIR");
  submit->add_option("--db", o->db, "Target database the merge job imports the shard databases into")->type_name("PATH");
  submit->add_option("--server", o->server,
                     "Also (or, without --db, instead) `parallax remote import` each shard database into the "
                     "`parallax serve` at HOST:PORT")
      ->type_name("HOST:PORT");
  submit->add_option("--token-file", o->token_file, "With --server: bearer token file for `parallax remote`")
      ->type_name("PATH");
  submit->add_option("--tls-ca", o->tls_ca, "With --server: PEM roots of the server's TLS certificate")
      ->type_name("PATH");
  submit->add_flag("--no-merge", o->no_merge, "Submit no merge job (merge the shard databases yourself)");
  submit->add_option("--gpus", o->gpus, "GPUs per task (--gres=gpu:G; 0: no gres line)")->capture_default_str();
  submit->add_option("--cpus-per-task", o->cpus_per_task, "CPUs per task (NVRTC compiles on them; 0: Slurm's default)")
      ->check(CLI::NonNegativeNumber);
  submit->add_option("--max-running", o->max_running, "At most this many shard tasks at once (--array=...%K; 0: no limit)")
      ->check(CLI::NonNegativeNumber);
  submit->add_option("--partition", o->partition, "Slurm partition of both jobs");
  submit->add_option("--time", o->time_limit, "Time limit of each shard task, in Slurm's format (e.g. 2:00:00); "
                                              "a task stopped by it resumes when the fleet is submitted again");
  submit->add_option("--job-name", o->job_name, "Job name prefix (default: plx-<dir name>; -tune / -merge appended)");
  submit->add_option("--sbatch-arg", o->sbatch_args,
                     "Another sbatch option for both jobs, as --name=value (repeatable): e.g. --constraint=h100, "
                     "--account=ml")
      ->allow_extra_args(false);
  submit->add_option("--parallax", o->parallax, "The parallax executable the jobs run (default: this one)")
      ->type_name("PATH");
  submit->add_flag("--all", o->all, "Submit every shard, the complete ones too (they finish at once)");
  submit->add_flag("--force", o->force, "Submit even while this fleet's last submission is still queued or running");
  submit->add_flag("--dry-run", o->dry_run, "Print the batch scripts and the sbatch commands; write and submit nothing");
  submit->add_flag("--script-only", o->script_only,
                   "Write the batch scripts and fleet.json into --dir and print the sbatch commands; submit nothing");
  submit->add_flag("--json", o->json, "Print the result as JSON");
  submit->add_option("tune-options", o->tune_args,
                     "After `--`: the options of `parallax tune` (see parallax tune --help), e.g. "
                     "-- --preset qwen3-0.6b --budget 2h")
      ->type_name("-- TUNE-OPTIONS");
  submit->footer(
      "Example:\n"
      "  parallax fleet submit --shards 8 --dir /shared/plx/h100-qwen3 --db /shared/plx/h100.db \\\n"
      "      --gpus 1 --partition gpu --sbatch-arg=--constraint=h100 -- --preset qwen3-0.6b --budget 2h\n"
      "Submitting the same command again resumes the fleet (complete shards are left out).");

  CLI::App* status = cmd.add_subcommand(
      "status", "Progress of a fleet: each shard's buckets done / planned (from its database) and Slurm state");
  status->add_option("--dir", o->dir, "The fleet directory given to fleet submit")->required()->type_name("DIR");
  status->add_flag("--json", o->json, "Print JSON instead of a table");

  return [o, submit, status] {
    if (submit->parsed()) return RunSubmit(*o);
    if (status->parsed()) return RunStatus(*o);
    return Usage("fleet needs a subcommand: submit or status (see parallax fleet --help)");
  };
}

}  // namespace

PLX_REGISTER_COMMAND(fleet, 58, "Tune across a Slurm cluster: submit a sharded tune as a job array, follow it",
                     SetupFleet);

}  // namespace parallax::cli
