// `parallax bench decode|prefill|bwd --shape B,L,Hq,Hkv,D`: time one variant (the runtime's
// choice, or --variant) on this machine's GPU by CUDA-graph replay, after checking it against
// the float64 reference at a reduced shape. Decode prints microseconds and achieved GB/s;
// prefill and its backward (causal, --q-len queries against L keys) microseconds and
// attention-equivalent TFLOP/s.
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cli_io.h"
#include "cli_options.h"
#include "parallax/cache/paths.h"
#include "parallax/codegen/space.h"
#include "parallax/runtime/runtime.h"
#include "parallax/search/backward_bench.h"
#include "parallax/search/decode_bench.h"
#include "parallax/search/logging.h"
#include "parallax/search/prefill_bench.h"
#include "registry.h"
#ifdef PLX_WITH_SERVICE
#include "parallax/service/runtime_lookup.h"
#endif

namespace parallax::cli {
namespace {

struct BenchCmdOptions {
  std::vector<int> shape;  // B, L, Hq, Hkv, D
  std::string variant;
  std::string probe = "learned";
  std::string affine = "plain";
  std::string dtype = "bf16";
  int paged = 0;
  int q_len = -1;  // prefill: queries per sequence (< 0: L); decode: query tokens (< 0: 1)
  int window = 0;  // prefill: sliding window (0: none)
  int reps = 20;
  int device = 0;
  std::string db;  // tuned configs, as an application would use them
  std::string server;  // a tuning service asked for configs the db lacks (service builds)
  bool no_verify = false;
  bool json = false;
};

// The problem both subcommands time, from --shape, --dtype, --probe and --affine (and the
// layout and window the caller sets on p first). 0, or the exit code after a usage error.
int MakeProblem(const BenchCmdOptions& o, Problem& p, Algorithm& alg) {
  if (o.shape.size() != 5) return Fail(kExitUsage, "--shape wants five numbers: B,L,Hq,Hkv,D");
  p.dtype = o.dtype == "fp16" ? DType::kFP16 : DType::kBF16;
  p.num_q_heads = o.shape[2];
  p.num_kv_heads = o.shape[3];
  p.head_dim = o.shape[4];
  alg.probe = o.probe == "none" ? Probe::kNone : Probe::kLearned;
  alg.affine = o.affine == "amplified" ? Affine::kAmplified : Affine::kPlain;
  if (o.shape[0] < 1 || o.shape[1] < 1) return Fail(kExitUsage, "--shape: B and L must be >= 1");
  if (absl::Status st = ValidateProblemOnly(p, alg); !st.ok())
    return Fail(kExitUsage, absl::StrCat("bad problem: ", st.message()));
  if (!o.variant.empty()) {
    absl::StatusOr<Variant> v = Variant::Parse(o.variant);
    if (!v.ok()) return Fail(kExitUsage, v.status().message());
    if (!(v->problem() == p) || !(v->algorithm() == alg))
      return Fail(kExitUsage, absl::StrCat("--variant is for ", ProblemKey(v->problem(), v->algorithm()),
                                           ", the shape is ", ProblemKey(p, alg)));
  }
  return 0;
}

absl::StatusOr<std::unique_ptr<Runtime>> MakeRuntime(const BenchCmdOptions& o) {
  RuntimeOptions ro;
  ro.device = o.device;
  ro.db_path = cache::ResolveDbPath(o.db);  // as the C API: --db, $PARALLAX_DB, the XDG default; "none"
  absl::StatusOr<std::unique_ptr<Runtime>> rt = Runtime::Create(ro);
#ifdef PLX_WITH_SERVICE
  if (rt.ok() && !o.server.empty()) {
    service::ServiceLookupOptions so;
    so.client.server = o.server;
    if (absl::Status s = service::AttachTuningService(**rt, so); !s.ok()) return s;
  }
#endif
  return rt;
}

// The reduced-shape check of the variant that ran (DecodeBench or PrefillBench).
template <typename Bench>
absl::StatusOr<search::VerifyResult> CheckRan(Bench& bench, const std::string& key, bool skip) {
  search::VerifyResult check;
  check.ok = true;
  if (skip) return check;
  absl::StatusOr<Variant> ran = Variant::Parse(key);
  if (!ran.ok()) return ran.status();
  return bench.Verify(*ran);
}

// Runtime, inputs, timing and the check of what ran, for either bench. Members are
// destroyed bottom-up: the bench (which holds the runtime) before the runtime.
template <typename Bench>
struct Measured {
  std::unique_ptr<Runtime> rt;
  std::unique_ptr<Bench> bench;
  search::Timing t;
  search::VerifyResult check;
};

// 0, or the exit code after printing why.
template <typename Bench, typename Shape>
int Measure(const BenchCmdOptions& o, const Shape& s, Measured<Bench>& m) {
  absl::StatusOr<std::unique_ptr<Runtime>> rt = MakeRuntime(o);
  if (!rt.ok()) return Fail(kExitFailure, absl::StrCat("bench needs a GPU: ", rt.status().message()));
  m.rt = *std::move(rt);
  search::BenchOptions bo;
  bo.reduced_check = !o.no_verify;
  absl::StatusOr<std::unique_ptr<Bench>> bench = Bench::Create(*m.rt, s, bo);
  if (!bench.ok()) return Fail(kExitFailure, bench.status().message());
  m.bench = *std::move(bench);
  absl::StatusOr<search::Timing> t = m.bench->Time(o.variant, o.reps);
  if (!t.ok()) return Fail(kExitFailure, t.status().message());
  m.t = *t;
  absl::StatusOr<search::VerifyResult> c = CheckRan(*m.bench, m.t.variant, o.no_verify);
  if (!c.ok()) return Fail(kExitFailure, c.status().message());
  m.check = *c;
  return 0;
}

int RunBenchDecode(const BenchCmdOptions& o) {
  search::LogToStderr();  // stdout is the command's output
  search::BenchShape s;
  Problem& p = s.problem;
  p.mode = Mode::kDecode;
  if (o.paged > 0) {
    p.kv_layout = KvLayout::kPaged;
    p.page_size = o.paged;
  }
  if (o.q_len > kMaxDecodeQueries || o.q_len == 0 || o.q_len < -1)
    return Fail(kExitUsage, absl::StrCat("--q-len ", o.q_len, ": decode takes 1..", kMaxDecodeQueries,
                                         " query tokens per sequence"));
  p.queries = o.q_len < 0 ? 1 : o.q_len;
  if (int rc = MakeProblem(o, p, s.algorithm); rc != 0) return rc;
  s.batch = o.shape[0];
  s.seqlen = o.shape[1];

  Measured<search::DecodeBench> m;
  if (int rc = Measure(o, s, m); rc != 0) return rc;
  const std::unique_ptr<Runtime>& rt = m.rt;
  const std::unique_ptr<search::DecodeBench>& bench = m.bench;
  const search::Timing* t = &m.t;
  const search::VerifyResult& check = m.check;
  const double gbps = bench->bytes_per_launch() / (t->median_us * 1e-6) / 1e9;
  if (o.json) {
    nlohmann::json j = {{"batch", s.batch},       {"seqlen", s.seqlen},     {"problem", ProblemKey(p, s.algorithm)},
                        {"variant", t->variant},  {"choice", t->choice},    {"num_splits", t->num_splits},
                        {"median_us", t->median_us}, {"min_us", t->min_us}, {"max_us", t->max_us},
                        {"reps", t->reps},        {"gbps", gbps},           {"input_sets", bench->num_sets()},
                        {"device", rt->device().name}, {"verified", !o.no_verify}, {"ok", check.ok}};
    if (!o.no_verify) j["rel_error"] = check.reduced_rel;
    if (!check.ok) j["error"] = check.error;
    std::cout << j.dump(2) << "\n";
  } else {
    std::cout << absl::StrFormat("decode b%d l%d %s on %s\n", s.batch, s.seqlen, ProblemKey(p, s.algorithm),
                                 rt->device().name)
              << absl::StrFormat("  %.2f us median (min %.2f, max %.2f, %d samples, %d input sets), %.0f GB/s\n",
                                 t->median_us, t->min_us, t->max_us, t->reps, bench->num_sets(), gbps)
              << absl::StrFormat("  variant %s (%s), %d split(s)\n", t->variant, t->choice, t->num_splits);
    if (!o.no_verify)
      std::cout << absl::StrFormat("  check: rel. error %.2e vs float64 at a reduced shape: %s\n", check.reduced_rel,
                                   check.ok ? "ok" : check.error);
  }
  return check.ok ? kExitOk : Fail(kExitFailure, absl::StrCat("wrong output: ", check.error));
}

// Prefill and its backward share the shape (B sequences of --q-len queries causal at the end
// of L keys, --window) and the report (time and attention-equivalent TFLOP/s; the backward is
// credited 2.5x the forward's FLOPs, BackwardFlops). Only prefill takes --paged.
template <typename Shape, typename BenchT>
int RunBenchRows(const BenchCmdOptions& o, Mode mode) {
  search::LogToStderr();
  Shape s;
  Problem& p = s.problem;
  p.mode = mode;
  const char* name = mode == Mode::kBackward ? "bwd" : "prefill";
  if (o.paged > 0) {  // extend over a paged cache: K/V pages shuffled over the pool
    p.kv_layout = KvLayout::kPaged;
    p.page_size = o.paged;
  }
  if (o.window < 0) return Fail(kExitUsage, absl::StrCat("--window ", o.window, ": must be >= 0 (0: no window)"));
  p.window = o.window > 0;
  if (int rc = MakeProblem(o, p, s.algorithm); rc != 0) return rc;
  s.batch = o.shape[0];
  s.seqlen_k = o.shape[1];
  s.seqlen_q = o.q_len < 0 ? s.seqlen_k : o.q_len;
  s.window = o.window;
  if (s.seqlen_q < 1 || s.seqlen_q > s.seqlen_k)
    return Fail(kExitUsage, absl::StrCat("--q-len ", s.seqlen_q, ": must be in 1..", s.seqlen_k,
                                         " (L, the keys per sequence)"));

  Measured<BenchT> m;
  if (int rc = Measure(o, s, m); rc != 0) return rc;
  const std::unique_ptr<Runtime>& rt = m.rt;
  const std::unique_ptr<BenchT>& bench = m.bench;
  const search::Timing* t = &m.t;
  const search::VerifyResult& check = m.check;
  const double flops = bench->flops_per_launch();
  const double tflops = flops / (t->median_us * 1e-6) / 1e12;
  const nlohmann::json info = bench->Info();
  if (o.json) {
    nlohmann::json j = {{"batch", s.batch},          {"seqlen_q", s.seqlen_q},   {"seqlen_k", s.seqlen_k},
                        {"window", s.window},        {"problem", ProblemKey(p, s.algorithm)},
                        {"variant", t->variant},     {"choice", t->choice},      {"median_us", t->median_us},
                        {"min_us", t->min_us},       {"max_us", t->max_us},      {"reps", t->reps},
                        {"flops", flops},            {"tflops", tflops},         {"input_sets", bench->num_sets()},
                        {"device", rt->device().name}, {"verified", !o.no_verify}, {"ok", check.ok}};
    if (!o.no_verify) {
      j["rel_error"] = check.reduced_rel;
      j["reduced"] = info.value("reduced", "");
      j["masked_rows"] = check.masked_rows;
    }
    if (!check.ok) j["error"] = check.error;
    std::cout << j.dump(2) << "\n";
  } else {
    std::cout << absl::StrFormat("%s b%d lq%d lk%d%s %s on %s\n", name, s.batch, s.seqlen_q, s.seqlen_k,
                                 s.window ? absl::StrCat(" w", s.window) : "", ProblemKey(p, s.algorithm),
                                 rt->device().name)
              << absl::StrFormat("  %.1f us median (min %.1f, max %.1f, %d samples, %d input sets), %.1f TFLOP/s"
                                 " (attention-equivalent)\n",
                                 t->median_us, t->min_us, t->max_us, t->reps, bench->num_sets(), tflops)
              << absl::StrFormat("  variant %s (%s)\n", t->variant, t->choice);
    if (!o.no_verify)
      std::cout << absl::StrFormat("  check: rel. error %.2e vs float64 at a reduced shape (%s%s): %s\n",
                                   check.reduced_rel, info.value("reduced", ""),
                                   check.masked_rows ? absl::StrCat(", ", check.masked_rows, " ill-conditioned rows left out") : "",
                                   check.ok ? "ok" : check.error);
  }
  return check.ok ? kExitOk : Fail(kExitFailure, absl::StrCat("wrong output: ", check.error));
}

// Options both subcommands take, bound to the same fields (one subcommand runs).
void AddCommonOptions(CLI::App* c, BenchCmdOptions& o) {
  c->add_option("--variant", o.variant, "Variant key (default: what the runtime would choose)");
  c->add_option("--probe", o.probe, "learned (Parallax) or none (softmax)")
      ->capture_default_str()->check(CLI::IsMember({"learned", "none"}));
  c->add_option("--affine", o.affine, "plain or amplified")
      ->capture_default_str()->check(CLI::IsMember({"plain", "amplified"}));
  c->add_option("--dtype", o.dtype, "bf16 or fp16")->capture_default_str()->check(CLI::IsMember({"bf16", "fp16"}));
}

void AddRunOptions(CLI::App* c, BenchCmdOptions& o, const char* db_help) {
  c->add_option("--reps", o.reps, "Timed samples")->capture_default_str()->check(CLI::PositiveNumber);
  c->add_option("--device", o.device, "CUDA device ordinal")->capture_default_str()->check(CLI::NonNegativeNumber);
  AddDbOption(*c, o.db, db_help);
  c->add_flag("--no-verify", o.no_verify, "Skip the reduced-shape check against the float64 reference");
  c->add_flag("--json", o.json, "Print JSON");
}

Action SetupBench(CLI::App& cmd) {
  auto o = std::make_shared<BenchCmdOptions>();
  cmd.require_subcommand(1);
  CLI::App* dec = cmd.add_subcommand("decode", "Time decode at one shape (graph replay, median, GB/s)");
  dec->add_option("--shape", o->shape, "B,L,Hq,Hkv,D: batch, keys per sequence, q heads, kv heads, head dim")
      ->required()->delimiter(',')->expected(5);
  AddCommonOptions(dec, *o);
  dec->add_option("--paged", o->paged, "Paged KV cache with N keys per page (0: contiguous)")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  dec->add_option("--q-len", o->q_len,
                  "Query tokens per sequence (multi-token decode, 2..16; sm_90's decode_sm90 serves it; default 1)");
  AddRunOptions(dec, *o, "Tuning database to take tuned configs from, read-only, as an application would");
#ifdef PLX_WITH_SERVICE
  dec->add_option("--server", o->server,
                  "Tuning service (host:port) asked for a config when --db has none, as an application "
                  "linking parallax_service_lookup would (insecure loopback; default: none)");
#endif

  CLI::App* pre = cmd.add_subcommand(
      "prefill", "Time causal prefill at one shape (graph replay, median, TFLOP/s)");
  pre->add_option("--shape", o->shape, "B,L,Hq,Hkv,D: batch, keys per sequence, q heads, kv heads, head dim")
      ->required()->delimiter(',')->expected(5);
  pre->add_option("--q-len", o->q_len,
                  "Queries per sequence, 1..L, causal at the end of the L keys (default: L; fewer: the last chunk "
                  "of a longer prefill)");
  pre->add_option("--window", o->window, "Sliding window of N keys (0: none)")->capture_default_str();
  AddCommonOptions(pre, *o);
  pre->add_option("--paged", o->paged,
                  "K/V in a paged cache with N keys per page, pages shuffled over the pool (0: contiguous)")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  AddRunOptions(pre, *o, "Tuning database to take tuned configs from (by prefill bucket), read-only");

  CLI::App* bwd = cmd.add_subcommand(
      "bwd", "Time the backward of a causal prefill at one shape: its three kernels by graph replay on the "
             "forward's out and statistics (median, TFLOP/s at 2.5x the forward's FLOPs)");
  bwd->add_option("--shape", o->shape, "B,L,Hq,Hkv,D: batch, keys per sequence, q heads, kv heads, head dim")
      ->required()->delimiter(',')->expected(5);
  bwd->add_option("--q-len", o->q_len,
                  "Queries per sequence, 1..L, causal at the end of the L keys (default: L)");
  bwd->add_option("--window", o->window, "Sliding window of N keys (0: none)")->capture_default_str();
  AddCommonOptions(bwd, *o);  // no --paged: the backward reads contiguous K/V only
  AddRunOptions(bwd, *o,
                "Tuning database to take tuned bwd configs from (by prefill bucket, as `tune --mode bwd` "
                "writes them), read-only");
  return [o, dec, pre, bwd] {
    if (dec->parsed()) return RunBenchDecode(*o);
    if (pre->parsed()) return RunBenchRows<search::PrefillShape, search::PrefillBench>(*o, Mode::kPrefill);
    if (bwd->parsed()) return RunBenchRows<search::BackwardShape, search::BackwardBench>(*o, Mode::kBackward);
    return Fail(kExitUsage, "bench needs a subcommand: decode, prefill or bwd");
  };
}

}  // namespace

PLX_REGISTER_COMMAND(bench, 40, "Time a decode, prefill or backward (bwd) kernel on this machine's GPU", SetupBench);

}  // namespace parallax::cli
