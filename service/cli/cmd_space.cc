// `parallax space`: list the valid, statically pruned variants of one problem for one
// architecture, with their shared memory, and why the other candidates were dropped. The
// families listed are those that run on --arch (search::PathsOnDevice, as the tuner does for
// the GPU in hand); without --arch, sm_90's limits and the portable families only.
#include <algorithm>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cli_io.h"
#include "parallax/codegen/space.h"
#include "parallax/search/pruning.h"
#include "parallax/search/tune_args.h"
#include "registry.h"

namespace parallax::cli {
namespace {

struct SpaceCmdOptions {
  std::string mode;
  std::string dtype = "bf16";
  int head_dim = 128;
  int q_heads = 32;
  int kv_heads = 8;
  int page_size = 0;  // 0: contiguous KV
  int q_len = 1;      // decode: query tokens per sequence
  bool window = false;
  std::string probe = "learned";
  std::string affine = "plain";
  std::string path = "all";
  std::string arch;  // "": not given (sm_90's limits, the portable families)
  std::vector<int> splits = {0};
  bool json = false;
  int limit = 0;  // 0: all
};

std::string Describe(const Problem& p, const Algorithm& a) {
  return absl::StrCat(ToString(p.mode), " ", ToString(p.dtype), " d", p.head_dim, " h", p.num_q_heads, "x",
                      p.num_kv_heads, " ",
                      p.kv_layout == KvLayout::kPaged ? absl::StrCat("paged", p.page_size) : "contig", " ",
                      p.window ? "win" : "nowin", p.queries > 1 ? absl::StrCat(" q", p.queries) : "", ", probe ",
                      ToString(a.probe), ", affine ",
                      ToString(a.affine));
}

nlohmann::json StatsJson(const SpaceStats& s) {
  return {{"candidates", s.candidates},          {"invalid", s.invalid},
          {"invalid_by_field", s.invalid_by_field}, {"smem_over_block", s.smem_over_block},
          {"no_cta_per_sm", s.no_cta_per_sm},    {"kept", s.kept}};
}

int RunSpace(const SpaceCmdOptions& o) {
  Problem p;
  absl::StatusOr<Mode> mode = search::ParseModeFlag(o.mode);
  if (!mode.ok()) return Fail(kExitUsage, mode.status().message());
  p.mode = *mode;
  p.dtype = o.dtype == "bf16" ? DType::kBF16 : DType::kFP16;
  p.head_dim = o.head_dim;
  p.num_q_heads = o.q_heads;
  p.num_kv_heads = o.kv_heads;
  p.kv_layout = o.page_size > 0 ? KvLayout::kPaged : KvLayout::kContiguous;
  p.page_size = o.page_size;
  p.queries = o.q_len;
  p.window = o.window;
  Algorithm a;
  a.probe = o.probe == "none" ? Probe::kNone : Probe::kLearned;
  a.affine = o.affine == "plain" ? Affine::kPlain : Affine::kAmplified;
  if (absl::Status st = ValidateProblemOnly(p, a); !st.ok())
    return Fail(kExitUsage, absl::StrCat("bad problem: ", st.message()));
  const std::string arch = o.arch.empty() ? "sm_90" : o.arch;
  absl::StatusOr<DeviceLimits> limits = DeviceLimitsForArch(arch);
  if (!limits.ok()) return Fail(kExitUsage, limits.status().message());

  SpaceOptions so;
  so.limits = *limits;
  so.splits = o.splits;
  // "all": every path a family of the mode runs on --arch; no arch given: the portable
  // families' (mma and fma), as before the sm_90a family existed.
  std::vector<MathPath> wanted;
  if (o.path == "mma") wanted = {MathPath::kMma};
  if (o.path == "fma") wanted = {MathPath::kFma};
  if (o.path == "wgmma") wanted = {MathPath::kWgmma};
  if (o.path == "all" && o.arch.empty()) wanted = search::PathsFor(p.mode, 0);
  const search::DevicePaths paths = search::PathsOnDevice(p.mode, wanted, arch);
  so.paths = paths.paths;
  SpaceStats stats;
  const std::vector<Variant> space = EnumerateSpace(p, a, so, &stats);
  const size_t shown = o.limit > 0 ? std::min<size_t>(space.size(), o.limit) : space.size();

  if (o.json) {
    nlohmann::json variants = nlohmann::json::array();
    for (size_t i = 0; i < shown; ++i)
      variants.push_back({{"key", space[i].Key()},
                          {"smem_bytes", space[i].smem_bytes()},
                          {"threads", space[i].threads()},
                          {"ctas_per_sm", CtasPerSm(space[i], so.limits)}});
    nlohmann::json path_names = nlohmann::json::array();
    for (MathPath m : so.paths) path_names.push_back(ToString(m));
    const nlohmann::json j = {{"problem", Describe(p, a)}, {"arch", arch},
                              {"paths", path_names},        {"skipped_paths", paths.skipped},
                              {"count", space.size()},      {"shown", shown},
                              {"variants", variants},       {"stats", StatsJson(stats)}};
    std::cout << j.dump(2) << "\n";
    return kExitOk;
  }
  std::cout << absl::StrFormat("# %s on %s (%d bytes of shared memory per block)\n", Describe(p, a), arch,
                               so.limits.max_smem_per_block)
            << absl::StrFormat("# %10s  %s\n", "smem_bytes", "key");
  for (size_t i = 0; i < shown; ++i)
    std::cout << absl::StrFormat("  %10d  %s\n", space[i].smem_bytes(), space[i].Key());
  if (shown < space.size()) std::cout << absl::StrFormat("# showing %d of %d\n", shown, space.size());
  for (const std::string& why : paths.skipped) std::cout << "# left out " << why << "\n";
  std::cout << "# " << stats.ToString() << "\n";
  return kExitOk;
}

Action SetupSpace(CLI::App& cmd) {
  auto o = std::make_shared<SpaceCmdOptions>();
  cmd.add_option("--mode", o->mode, "decode, prefill or bwd (the backward of a prefill)")
      ->required()->check(CLI::IsMember({"decode", "prefill", "bwd"}));
  cmd.add_option("--dtype", o->dtype, "bf16 or fp16")->capture_default_str()->check(CLI::IsMember({"bf16", "fp16"}));
  cmd.add_option("--head-dim", o->head_dim, "Head dimension: 64, 128 or 256")->capture_default_str();
  cmd.add_option("--q-heads", o->q_heads, "Query heads")->capture_default_str();
  cmd.add_option("--kv-heads", o->kv_heads, "KV heads")->capture_default_str();
  cmd.add_option("--paged", o->page_size, "Paged KV cache with N keys per page (decode; prefill: extend over pages)")
      ->check(CLI::PositiveNumber);
  cmd.add_flag("--window", o->window, "Compile in the sliding window");
  cmd.add_option("--q-len", o->q_len, "Decode: query tokens per sequence (2..16: multi-token decode, decode_sm90)")
      ->capture_default_str()->check(CLI::Range(1, kMaxDecodeQueries));
  cmd.add_option("--probe", o->probe, "none (softmax) or learned (Parallax)")
      ->capture_default_str()->check(CLI::IsMember({"none", "learned"}));
  cmd.add_option("--affine", o->affine, "plain or amplified")
      ->capture_default_str()->check(CLI::IsMember({"plain", "amplified"}));
  cmd.add_option("--path", o->path,
                 "Math path: mma (mma.sync), fma, wgmma (the Hopper prefill family; runs on sm_90 only) or all: "
                 "every path a family runs on --arch (without --arch: mma and fma)")
      ->capture_default_str()->check(CLI::IsMember({"mma", "fma", "wgmma", "all"}));
  cmd.add_option("--arch", o->arch,
                 "Device to list for: sm_80, sm_86, sm_89, sm_90 or sm_90a. Prunes by its limits and lists the "
                 "families that run on it (sm_90 and sm_90a add the wgmma prefill family, compiled for sm_90a). "
                 "Default: sm_90's limits, mma and fma only")
      ->check(CLI::IsMember({"sm_80", "sm_86", "sm_89", "sm_90", "sm_90a"}));
  cmd.add_option("--splits", o->splits, "Decode split-KV counts to enumerate (0 = chosen at launch)")
      ->capture_default_str()->delimiter(',')->check(CLI::Range(0, 256));
  cmd.add_flag("--json", o->json, "Print JSON");
  cmd.add_option("--limit", o->limit, "Print at most N variants (0: all)")->check(CLI::NonNegativeNumber);
  return [o] { return RunSpace(*o); };
}

}  // namespace

PLX_REGISTER_COMMAND(space, 30, "List the valid, statically pruned variants of a problem", SetupSpace);

}  // namespace parallax::cli
