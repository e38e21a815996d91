// `parallax tune`: offline tuning of one decode, prefill or bwd problem over a shape grid on this
// machine's GPUs, into the tuning database the runtime reads. Progress goes to stderr; the
// summary (or --json) to stdout. Ctrl-C / SIGTERM stop cleanly; the same command resumes.
// --shard I/N tunes a deterministic, cost-balanced slice of the buckets (search/shard.h);
// --dry-run lists the units (the shard's) with their expected costs, without a GPU.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cli_io.h"
#include "cli_options.h"
#include "parallax/search/progress.h"
#include "parallax/search/shard.h"
#include "parallax/search/tuning_db.h"
#include "parallax/search/tune_args.h"
#include "parallax/search/tuner.h"
#include "parallax/search/logging.h"
#include "registry.h"
#ifdef PLX_CLI_TEST_HOOKS
#include "test_hooks.h"  // test builds of the CLI only
#endif

namespace parallax::cli {
namespace {

constexpr int kExitInterrupted = 130;  // the shell's convention for SIGINT

struct TuneCmdOptions {
  search::TuneArgs args;
  double budget_s = 30 * 60;
  std::string strategy = "guided";
  uint64_t seed = 1;
  std::vector<int> splits = search::TuneSpaceOptions{}.splits;
  bool no_fused = false;
  std::vector<int> reps = {3, 8, 20};  // few, mid, full
  std::string db;
  std::string cache_dir;
  int compile_threads = 0;
  double min_timeout_s = 5;
  bool json = false;
  std::string shard;      // "I/N"; used when shard_given
  bool shard_given = false;
  bool dry_run = false;
  bool test_faults = false;  // plant the -testfault / -testhang variants (isolation check)
  std::vector<std::string> seed_dbs;  // read-only warm-start sources
};

std::atomic<bool> g_stop{false};

// First signal: stop after cleaning up; a second one: leave now.
extern "C" void OnSignal(int) {
  if (g_stop.exchange(true)) ::_exit(kExitInterrupted);
  static const char kMsg[] = "\nparallax: stopping (measurements so far are kept; again to quit now)\n";
  (void)!::write(2, kMsg, sizeof(kMsg) - 1);
}

nlohmann::json ReportJson(const search::TuneReport& r, const std::string& db) {
  nlohmann::json units = nlohmann::json::array();
  for (const search::UnitReport& u : r.units) {
    nlohmann::json j = {{"device", u.device},     {"bucket", u.bucket},   {"candidates", u.candidates},
                        {"measured", u.measured}, {"cached", u.cached},   {"pruned", u.pruned},
                        {"failed", u.failed},     {"wrong", u.wrong},     {"timeout", u.timeout},
                        {"budget_exhausted", u.budget_exhausted}};
    if (!u.best_key.empty()) {
      j["best"] = u.best_key;
      j["best_us"] = u.best_us;
    }
    if (u.default_us > 0) {
      j["default_us"] = u.default_us;
      if (u.best_us > 0) j["speedup_vs_default"] = u.default_us / u.best_us;
    }
    if (!u.error.empty()) j["error"] = u.error;
    if (!u.warm_start.empty() || u.warm_start.dropped > 0) j["warm_start"] = search::ToJson(u.warm_start);
    units.push_back(j);
  }
  return {{"problem", r.problem_key},
          {"db", db},
          {"wall_s", r.wall_s},
          {"cancelled", r.cancelled},
          {"budget_exhausted", r.budget_exhausted},
          {"run_ids", r.run_ids},
          {"compile", {{"classes", r.compile.classes}, {"compiled", r.compile.done - r.compile.cached},
                       {"cached", r.compile.cached}, {"pruned", r.compile.pruned}, {"failed", r.compile.failed}}},
          {"buckets", units},
          {"timing", search::ToJson(r.timing)}};
}

void PrintSummary(const search::TuneReport& r, const std::string& db) {
  std::cout << absl::StrFormat("# %s: %d bucket(s) in %s, database %s\n", r.problem_key, r.units.size(),
                               search::ProgressPrinter::Duration(r.wall_s), db);
  std::cout << absl::StrFormat("# %-13s %10s %10s %8s %9s  %s\n", "bucket", "best_us", "default_us", "speedup",
                               "measured", "variant");
  for (const search::UnitReport& u : r.units) {
    const std::string speedup = u.default_us > 0 && u.best_us > 0 ? absl::StrFormat("%.2fx", u.default_us / u.best_us) : "-";
    std::cout << absl::StrFormat("  %-13s %10s %10s %8s %9d  %s%s\n", u.bucket,
                                 u.best_us > 0 ? absl::StrFormat("%.2f", u.best_us) : "-",
                                 u.default_us > 0 ? absl::StrFormat("%.2f", u.default_us) : "-", speedup,
                                 u.measured + u.cached, u.best_key.empty() ? "-" : u.best_key,
                                 u.error.empty() ? "" : absl::StrCat("  (", u.error, ")"));
  }
  std::cout << "# " << search::Summary(r.timing) << "\n";  // last: where the wall time went
}

// --dry-run: the units, their expected costs and shards; only the selected shard's with --shard.
int PrintPlan(const search::TuneRequest& req, const search::ShardPlan& plan, const search::ShardSpec* shard,
              bool json) {
  const std::string problem = ProblemKey(req.problem, req.algorithm);
  double total = 0, mine = 0;
  int count = 0;
  nlohmann::json units = nlohmann::json::array();
  for (const search::WorkUnit& u : plan.units) {
    total += u.cost_s;
    if (shard != nullptr && u.shard != shard->index) continue;
    mine += u.cost_s;
    ++count;
    units.push_back({{"unit", u.order + 1}, {"bucket", u.key}, {"candidates", u.candidates},
                     {"expected_s", u.cost_s}, {"shard", u.shard}});
  }
  if (json) {
    nlohmann::json j = {{"problem", problem},
                        {"shard", shard != nullptr ? nlohmann::json(search::ToString(*shard)) : nlohmann::json()},
                        {"shards", plan.count},
                        {"units_total", plan.units.size()},
                        {"expected_s", mine},
                        {"expected_total_s", total},
                        {"shard_expected_s", plan.load_s},
                        {"units", units}};
    std::cout << j.dump(2) << "\n";
    return kExitOk;
  }
  std::cout << absl::StrFormat("# %s: %s%d of %d unit(s), expected %s of %s (a rough estimate, for balancing)\n",
                               problem, shard != nullptr ? absl::StrCat("shard ", search::ToString(*shard), ": ") : "",
                               count, plan.units.size(), search::ProgressPrinter::Duration(mine),
                               search::ProgressPrinter::Duration(total));
  std::cout << absl::StrFormat("# %4s %-15s %10s %11s %5s\n", "unit", "bucket", "candidates", "expected_s", "shard");
  for (const nlohmann::json& u : units)
    std::cout << absl::StrFormat("  %4d %-15s %10d %11.1f %5d\n", u["unit"].get<int>(), u["bucket"].get<std::string>(),
                                 u["candidates"].get<int>(), u["expected_s"].get<double>(), u["shard"].get<int>());
  return kExitOk;
}

int RunTune(const TuneCmdOptions& o) {
  search::LogToStderr();  // stdout is the command's output
  absl::StatusOr<search::TuneRequest> req = search::MakeTuneRequest(o.args);
  if (!req.ok()) return Fail(kExitUsage, req.status().message());
  absl::StatusOr<search::StrategyKind> kind = search::ParseStrategy(o.strategy);
  if (!kind.ok()) return Fail(kExitUsage, kind.status().message());
  if (o.reps.size() != 3 || o.reps[0] < 1 || o.reps[0] > o.reps[1] || o.reps[1] > o.reps[2])
    return Fail(kExitUsage, "--reps wants three increasing counts: few,mid,full (e.g. 3,8,20)");
  if (o.splits.empty()) return Fail(kExitUsage, "--splits needs at least one count");
  if (o.min_timeout_s <= 0) return Fail(kExitUsage, "--min-timeout must be above 0");
  search::ShardSpec shard;
  if (o.shard_given) {
    absl::StatusOr<search::ShardSpec> s = search::ParseShard(o.shard);
    if (!s.ok()) return Fail(kExitUsage, s.status().message());
    shard = *s;
  }
  search::TuneSpaceOptions space;
  space.splits = o.splits;
  space.fused_merge = !o.no_fused;
  const search::TuneRequest full = *req;
  if (o.dry_run || o.shard_given) {
    const search::ShardPlan plan = search::PlanShards(full, space, shard.count);
    if (o.dry_run) return PrintPlan(full, plan, o.shard_given ? &shard : nullptr, o.json);
    *req = search::ShardRequest(full, plan, shard.index);
  }

  absl::StatusOr<std::string> db = RequiredDbPath(o.db, "tune");
  if (!db.ok()) return Fail(kExitUsage, db.status().message());
  if (req->buckets.empty()) {
    // More shards than buckets: nothing to tune, but the database exists for the merge step.
    absl::StatusOr<std::unique_ptr<search::TuningDb>> t = search::TuningDb::Open(*db);
    if (!t.ok()) return Fail(kExitFailure, t.status().message());
    std::cerr << absl::StrFormat("parallax: shard %s has no work (%d bucket(s) over %d shards); %s is empty\n",
                                 search::ToString(shard), full.buckets.size(), shard.count, *db);
    if (o.json)
      std::cout << nlohmann::json({{"problem", ProblemKey(full.problem, full.algorithm)},
                                   {"db", *db},
                                   {"shard", search::ToString(shard)},
                                   {"buckets", nlohmann::json::array()}})
                       .dump(2)
                << "\n";
    return kExitOk;
  }
  search::TuneOptions to;
  to.db_path = *db;
  to.strategy.kind = *kind;
  to.strategy.seed = o.seed;
  to.strategy.reps = {o.reps[0], o.reps[1], o.reps[2]};
  to.budget_s = o.budget_s;
  to.space = space;
  to.cache_dir = o.cache_dir;
  to.compile_threads = o.compile_threads;
  to.min_timeout_s = o.min_timeout_s;
  to.worker_argv = {SelfPath(), "worker"};
  if (o.test_faults) {
    const std::string def = search::DefaultVariantKey(req->problem, req->algorithm);
    to.extra_candidates = {def + "-testfault", def + "-testhang"};
    to.allow_test_variants = true;
  }
  to.seed_dbs = o.seed_dbs;
  to.cancel = &g_stop;
  search::TuneDeps deps;  // this machine's GPUs and NVRTC
#ifdef PLX_CLI_TEST_HOOKS
  // Test builds of the CLI only (test_hooks.h): fake GPUs and worker named by the environment.
  if (absl::Status s = ApplyTuneTestHooks(to, deps); !s.ok()) return Fail(kExitUsage, s.message());
#endif
  to.command = {{"mode", o.args.mode}, {"preset", o.args.preset}, {"splits", o.splits}, {"fused", !o.no_fused}, {"reps", o.reps}};
  if (o.shard_given) to.command["shard"] = search::ToString(shard);
  search::ProgressPrinter printer(stderr, ::isatty(2) != 0);
  to.progress = [&printer](const search::ProgressEvent& e) { printer(e); };

  g_stop = false;
  struct sigaction sa {}, old_int {}, old_term {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGINT, &sa, &old_int);
  ::sigaction(SIGTERM, &sa, &old_term);
  absl::StatusOr<search::TuneReport> r = search::Tune(*req, to, deps);
  ::sigaction(SIGINT, &old_int, nullptr);
  ::sigaction(SIGTERM, &old_term, nullptr);
  printer.Finish();
  if (!r.ok()) return Fail(r.status().code() == absl::StatusCode::kInvalidArgument ? kExitUsage : kExitFailure,
                           r.status().message());
  if (o.json) {
    nlohmann::json j = ReportJson(*r, to.db_path);
    if (o.shard_given) j["shard"] = search::ToString(shard);
    std::cout << j.dump(2) << "\n";
  } else {
    if (o.shard_given)
      std::cout << absl::StrFormat("# shard %s: %d of %d bucket(s)\n", search::ToString(shard), req->buckets.size(),
                                   full.buckets.size());
    PrintSummary(*r, to.db_path);
  }
  if (r->cancelled) return Fail(kExitInterrupted, "interrupted; rerun the same command to resume");
  bool any_ok = false;
  for (const search::UnitReport& u : r->units) any_ok = any_ok || !u.best_key.empty();
  if (!any_ok) return Fail(kExitFailure, "no bucket was tuned (see the errors above)");
  return kExitOk;
}

Action SetupTune(CLI::App& cmd) {
  auto o = std::make_shared<TuneCmdOptions>();
  search::TuneArgs& a = o->args;
  cmd.add_option("--mode", a.mode, "decode, prefill or bwd, the backward of a prefill (buckets: batch x seqlen; "
                                   "prefill and bwd: batch x q-len query tokens x seqlen context, e.g. t4096-l4096)")
      ->capture_default_str()->check(CLI::IsMember({"decode", "prefill", "bwd"}));
  cmd.add_option("--preset", a.preset, "Model attention shape: qwen3-0.6b, qwen3-1.7b or llama3-8b")
      ->check(CLI::IsMember({"qwen3-0.6b", "qwen3-1.7b", "llama3-8b"}));
  cmd.add_option("--q-heads", a.q_heads, "Query heads (overrides the preset)")->check(CLI::PositiveNumber);
  cmd.add_option("--kv-heads", a.kv_heads, "KV heads (overrides the preset)")->check(CLI::PositiveNumber);
  cmd.add_option("--head-dim", a.head_dim, "Head dimension: 64, 128 or 256 (overrides the preset)")
      ->check(CLI::IsMember({64, 128, 256}));
  cmd.add_option("--dtype", a.dtype, "bf16 or fp16")->capture_default_str()->check(CLI::IsMember({"bf16", "fp16"}));
  cmd.add_option("--batch", a.batch, "Batch sizes (each rounds up to its bucket)")
      ->capture_default_str()->delimiter(',')->check(CLI::PositiveNumber);
  cmd.add_option("--seqlen", a.seqlen, "KV lengths (each rounds up to its bucket, at least 1024)")
      ->capture_default_str()->delimiter(',')->check(CLI::PositiveNumber);
  cmd.add_option("--q-len", a.q_len, "Prefill and bwd: queries per sequence, a chunk at the end of each --seqlen "
                                     "(default: --seqlen, a full causal prefill). Decode: one value, the query "
                                     "tokens per sequence (2..16: multi-token decode, decode_sm90 on sm_90)")
      ->delimiter(',')->check(CLI::PositiveNumber);
  cmd.add_option("--probe", a.probe, "learned (Parallax) or none (softmax)")
      ->capture_default_str()->check(CLI::IsMember({"learned", "none"}));
  cmd.add_option("--affine", a.affine, "plain or amplified")
      ->capture_default_str()->check(CLI::IsMember({"plain", "amplified"}));
  cmd.add_option("--paged", a.paged, "Paged KV cache with N keys per page (0: contiguous; decode only)")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  AddDurationOption(cmd, "--budget", o->budget_s, "Time budget of the whole run, 0 for none; the best so far is kept");
  cmd.add_option("--strategy", o->strategy, "guided (cost model + racing), exhaustive or random")
      ->capture_default_str()->check(CLI::IsMember({"guided", "exhaustive", "random"}));
  cmd.add_option("--seed", o->seed, "Seed of the random strategy and guided exploration")->capture_default_str();
  cmd.add_option("--splits", o->splits, "Split-KV counts to search (0: the runtime's choice at launch)")
      ->capture_default_str()->delimiter(',')->check(CLI::Range(0, 256));
  cmd.add_flag("--no-fused", o->no_fused, "Do not search the fused split merge");
  cmd.add_option("--reps", o->reps, "Timed samples per round: few,mid,full")->capture_default_str()->delimiter(',');
  AddDbOption(cmd, o->db, "Tuning database to write (created with its directory)");
  cmd.add_option("--cache-dir", o->cache_dir, "Where compiled kernels go (default: the runtime's cache)");
  cmd.add_option("--compile-threads", o->compile_threads, "Compile threads (0: every core)")
      ->check(CLI::NonNegativeNumber);
  AddDurationOption(cmd, "--min-timeout", o->min_timeout_s,
                    "How long a measurement may take before its worker is killed, at least (else 20x its "
                    "expected time)");
  CLI::Option* shard = cmd.add_option(
      "--shard", o->shard,
      "Tune shard I of N (1-based, e.g. 2/4): a deterministic slice of the buckets balanced by expected cost; "
      "give each shard its own --db, rerun to resume, merge with `db import`");
  cmd.add_flag("--dry-run", o->dry_run,
               "List the units of work (with --shard: the shard's) and their expected costs; no GPU, no database");
  cmd.add_option("--seed-db", o->seed_dbs,
                 "Also warm-start from this database's tuned configs (repeatable; read-only, never migrated): "
                 "e.g. one tuned on another GPU model; the nearest model's seeds are measured first")
      ->take_all()->allow_extra_args(false);
  cmd.add_flag("--json", o->json, "Print the summary as JSON");
  // Hidden: the GPU suite uses it to prove that a faulting and a hanging kernel are recorded
  // as failed / timeout while tuning goes on.
  cmd.add_flag("--test-faults", o->test_faults, "Also measure a faulting and a hanging test variant")->group("");
  return [o, shard] {
    o->shard_given = shard->count() > 0;
    return RunTune(*o);
  };
}

}  // namespace

PLX_REGISTER_COMMAND(tune, 50, "Tune decode, prefill or backward kernels for a model's shapes on this machine's GPUs",
                     SetupTune);

}  // namespace parallax::cli
