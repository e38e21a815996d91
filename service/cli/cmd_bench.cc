// `parallax bench decode --shape B,L,Hq,Hkv,D`: time one decode variant (the runtime's
// choice, or --variant) on this machine's GPU by CUDA-graph replay, after checking it against
// the float64 reference at a reduced shape. Prints microseconds and achieved GB/s.
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cli_io.h"
#include "parallax/codegen/space.h"
#include "parallax/runtime/runtime.h"
#include "parallax/search/decode_bench.h"
#include "parallax/search/logging.h"
#include "registry.h"

namespace parallax::cli {
namespace {

struct BenchCmdOptions {
  std::vector<int> shape;  // B, L, Hq, Hkv, D
  std::string variant;
  std::string probe = "learned";
  std::string affine = "plain";
  std::string dtype = "bf16";
  int paged = 0;
  int reps = 20;
  int device = 0;
  std::string db;  // tuned configs, as an application would use them
  bool no_verify = false;
  bool json = false;
};

int RunBenchDecode(const BenchCmdOptions& o) {
  search::LogToStderr();  // stdout is the command's output
  if (o.shape.size() != 5) return Fail(kExitUsage, "--shape wants five numbers: B,L,Hq,Hkv,D");
  search::BenchShape s;
  s.batch = o.shape[0];
  s.seqlen = o.shape[1];
  Problem& p = s.problem;
  p.mode = Mode::kDecode;
  p.dtype = o.dtype == "fp16" ? DType::kFP16 : DType::kBF16;
  p.num_q_heads = o.shape[2];
  p.num_kv_heads = o.shape[3];
  p.head_dim = o.shape[4];
  if (o.paged > 0) {
    p.kv_layout = KvLayout::kPaged;
    p.page_size = o.paged;
  }
  s.algorithm.probe = o.probe == "none" ? Probe::kNone : Probe::kLearned;
  s.algorithm.affine = o.affine == "amplified" ? Affine::kAmplified : Affine::kPlain;
  if (s.batch < 1 || s.seqlen < 1) return Fail(kExitUsage, "--shape: B and L must be >= 1");
  if (absl::Status st = ValidateProblemOnly(p, s.algorithm); !st.ok())
    return Fail(kExitUsage, absl::StrCat("bad problem: ", st.message()));
  if (!o.variant.empty()) {
    absl::StatusOr<Variant> v = Variant::Parse(o.variant);
    if (!v.ok()) return Fail(kExitUsage, v.status().message());
    if (!(v->problem() == p) || !(v->algorithm() == s.algorithm))
      return Fail(kExitUsage, absl::StrCat("--variant is for ", ProblemKey(v->problem(), v->algorithm()),
                                           ", the shape is ", ProblemKey(p, s.algorithm)));
  }

  RuntimeOptions ro;
  ro.device = o.device;
  ro.db_path = o.db;
  absl::StatusOr<std::unique_ptr<Runtime>> rt = Runtime::Create(ro);
  if (!rt.ok()) return Fail(kExitFailure, absl::StrCat("bench needs a GPU: ", rt.status().message()));
  search::BenchOptions bo;
  bo.reduced_check = !o.no_verify;
  absl::StatusOr<std::unique_ptr<search::DecodeBench>> bench = search::DecodeBench::Create(**rt, s, bo);
  if (!bench.ok()) return Fail(kExitFailure, bench.status().message());
  absl::StatusOr<search::Timing> t = (*bench)->Time(o.variant, o.reps);
  if (!t.ok()) return Fail(kExitFailure, t.status().message());
  search::VerifyResult check;
  check.ok = true;
  if (!o.no_verify) {
    absl::StatusOr<Variant> ran = Variant::Parse(t->variant);
    absl::StatusOr<search::VerifyResult> c = ran.ok() ? (*bench)->Verify(*ran) : absl::StatusOr<search::VerifyResult>(ran.status());
    if (!c.ok()) return Fail(kExitFailure, c.status().message());
    check = *c;
  }
  const double gbps = (*bench)->bytes_per_launch() / (t->median_us * 1e-6) / 1e9;
  if (o.json) {
    nlohmann::json j = {{"batch", s.batch},       {"seqlen", s.seqlen},     {"problem", ProblemKey(p, s.algorithm)},
                        {"variant", t->variant},  {"choice", t->choice},    {"num_splits", t->num_splits},
                        {"median_us", t->median_us}, {"min_us", t->min_us}, {"max_us", t->max_us},
                        {"reps", t->reps},        {"gbps", gbps},           {"input_sets", (*bench)->num_sets()},
                        {"device", (*rt)->device().name}, {"verified", !o.no_verify}, {"ok", check.ok}};
    if (!o.no_verify) j["rel_error"] = check.reduced_rel;
    if (!check.ok) j["error"] = check.error;
    std::cout << j.dump(2) << "\n";
  } else {
    std::cout << absl::StrFormat("decode b%d l%d %s on %s\n", s.batch, s.seqlen, ProblemKey(p, s.algorithm),
                                 (*rt)->device().name)
              << absl::StrFormat("  %.2f us median (min %.2f, max %.2f, %d samples, %d input sets), %.0f GB/s\n",
                                 t->median_us, t->min_us, t->max_us, t->reps, (*bench)->num_sets(), gbps)
              << absl::StrFormat("  variant %s (%s), %d split(s)\n", t->variant, t->choice, t->num_splits);
    if (!o.no_verify)
      std::cout << absl::StrFormat("  check: rel. error %.2e vs float64 at a reduced shape: %s\n", check.reduced_rel,
                                   check.ok ? "ok" : check.error);
  }
  return check.ok ? kExitOk : Fail(kExitFailure, absl::StrCat("wrong output: ", check.error));
}

Action SetupBench(CLI::App& cmd) {
  auto o = std::make_shared<BenchCmdOptions>();
  cmd.require_subcommand(1);
  CLI::App* dec = cmd.add_subcommand("decode", "Time decode at one shape (graph replay, median)");
  dec->add_option("--shape", o->shape, "B,L,Hq,Hkv,D")->required()->delimiter(',')->expected(5);
  dec->add_option("--variant", o->variant, "Variant key (default: what the runtime would choose)");
  dec->add_option("--probe", o->probe, "learned (Parallax) or none (softmax)")
      ->capture_default_str()->check(CLI::IsMember({"learned", "none"}));
  dec->add_option("--affine", o->affine, "plain or amplified")
      ->capture_default_str()->check(CLI::IsMember({"plain", "amplified"}));
  dec->add_option("--dtype", o->dtype, "bf16 or fp16")->capture_default_str()->check(CLI::IsMember({"bf16", "fp16"}));
  dec->add_option("--paged", o->paged, "Paged KV cache with N keys per page (0: contiguous)")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  dec->add_option("--reps", o->reps, "Timed samples")->capture_default_str()->check(CLI::PositiveNumber);
  dec->add_option("--device", o->device, "CUDA device ordinal")->capture_default_str()->check(CLI::NonNegativeNumber);
  dec->add_option("--db", o->db, "Tuning database to take tuned configs from (default: none)");
  dec->add_flag("--no-verify", o->no_verify, "Skip the reduced-shape check against the float64 reference");
  dec->add_flag("--json", o->json, "Print JSON");
  return [o, dec] {
    if (dec->parsed()) return RunBenchDecode(*o);
    return Fail(kExitUsage, "bench needs a subcommand: decode");
  };
}

}  // namespace

PLX_REGISTER_COMMAND(bench, 40, "Time a decode kernel on this machine's GPU", SetupBench);

}  // namespace parallax::cli
