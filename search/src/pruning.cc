#include "parallax/search/pruning.h"

#include <algorithm>
#include <cctype>
#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "parallax/codegen/generator.h"
#include "parallax/codegen/kernel_family.h"

namespace parallax::search {
namespace {

constexpr int kMaxRegisters = 255;  // the ISA limit; ptxas spills beyond it

// The archs with device limits (DeviceLimitsForArch), to say where a family does run.
constexpr int kKnownSms[] = {80, 86, 89, 90};

}  // namespace

int SmOfArch(std::string_view arch) {
  if (arch.substr(0, 3) != "sm_") return 0;
  int sm = 0;
  size_t i = 3;
  for (; i < arch.size() && i < 7 && std::isdigit(static_cast<unsigned char>(arch[i])); ++i) sm = sm * 10 + (arch[i] - '0');
  // "sm_90" or "sm_90a" (an arch-specific target of the same device); nothing else.
  const bool ok = i > 3 && (i == arch.size() || (i + 1 == arch.size() && std::isalpha(static_cast<unsigned char>(arch[i]))));
  return ok ? sm : 0;
}

std::string CompileArchFor(const KernelFamily& f, const std::string& device_arch) {
  const absl::string_view suffix = f.ArchSuffix();
  // An arch given with the suffix already ("sm_90a") is not suffixed twice.
  if (suffix.empty() || absl::EndsWith(device_arch, suffix)) return device_arch;
  return absl::StrCat(device_arch, suffix);
}

std::optional<std::string> NotOnDeviceReason(const KernelFamily& f, std::string_view arch) {
  const int sm = SmOfArch(arch);
  if (f.RunsOn(sm)) return std::nullopt;
  std::vector<std::string> where;
  for (int k : kKnownSms)
    if (f.RunsOn(k)) where.push_back(absl::StrCat("sm_", k));
  const std::string name(arch);
  return absl::StrCat("the ", f.name(), " family does not run on ",
                      sm > 0 ? name : absl::StrCat("an unknown device (arch '", name, "')"),
                      where.empty() ? "" : absl::StrCat(" (it runs on ", absl::StrJoin(where, ", "), " only)"));
}

std::vector<MathPath> PathsFor(Mode mode, int sm) {
  std::vector<MathPath> out;
  for (const KernelFamily* f : AllFamilies()) {
    if (f->mode() != mode || !f->RunsOn(sm) || f->OptIn()) continue;
    for (MathPath path : f->paths())
      if (FindFamily(mode, path) == f && std::find(out.begin(), out.end(), path) == out.end()) out.push_back(path);
  }
  std::sort(out.begin(), out.end());
  return out;
}

DevicePaths PathsOnDevice(Mode mode, const std::vector<MathPath>& wanted, std::string_view arch) {
  DevicePaths out;
  const std::vector<MathPath> asked = wanted.empty() ? PathsFor(mode, SmOfArch(arch)) : wanted;
  for (MathPath path : asked) {
    if (std::find(out.paths.begin(), out.paths.end(), path) != out.paths.end()) continue;
    const KernelFamily* f = FindFamily(mode, path);
    if (f == nullptr) {
      out.skipped.push_back(absl::StrCat("path ", ToString(path), ": no ", ToString(mode), " family serves it"));
      continue;
    }
    if (std::optional<std::string> why = NotOnDeviceReason(*f, arch)) {
      out.skipped.push_back(absl::StrCat("path ", ToString(path), ": ", *why));
      continue;
    }
    out.paths.push_back(path);
  }
  return out;
}

DeviceLimits LimitsFor(const DeviceInfo& dev) {
  absl::StatusOr<DeviceLimits> preset = DeviceLimitsForArch(dev.arch());
  DeviceLimits l = preset.ok() ? *preset : DeviceLimits::Sm90();
  l.arch = dev.arch();
  if (dev.max_smem_per_block_optin > 0) l.max_smem_per_block = dev.max_smem_per_block_optin;
  if (dev.smem_per_sm > 0) l.smem_per_sm = dev.smem_per_sm;
  return l;
}

StaticSpace BuildStaticSpace(const Problem& p, const Algorithm& a, const DeviceLimits& limits,
                             const TuneSpaceOptions& o) {
  SpaceOptions so;
  so.limits = limits;
  so.prune = true;
  so.splits = o.splits;  // families without split counts ignore them
  StaticSpace out;
  DevicePaths dp = PathsOnDevice(p.mode, o.paths, limits.arch);
  so.paths = dp.paths;
  out.skipped = std::move(dp.skipped);
  // What the left-out paths would have added, so a report can say how much was skipped.
  std::vector<MathPath> counted;
  for (MathPath path : o.paths) {
    const KernelFamily* f = FindFamily(p.mode, path);
    if (f == nullptr || std::find(so.paths.begin(), so.paths.end(), path) != so.paths.end() ||
        std::find(counted.begin(), counted.end(), path) != counted.end())
      continue;
    counted.push_back(path);
    SpaceOptions all = so;
    all.paths = {path};
    all.prune = false;
    out.not_on_device += static_cast<int>(EnumerateSpace(p, a, all).size());
  }
  // A family that enumerates fused schedules itself (decode_sm90's cluster merge) already has
  // some twins in the space: each key is kept once, where it first appears.
  std::set<std::string> keys;
  for (Variant& v : EnumerateSpace(p, a, so, &out.stats)) {
    const bool twin = o.fused_merge && (FamilyOf(v).fields() & kFieldFusedMerge) && v.schedule().splits != 1 &&
                      !v.schedule().fused_merge;
    Schedule s = v.schedule();
    if (!keys.insert(v.Key()).second) continue;
    out.variants.push_back(std::move(v));
    if (!twin) continue;
    s.fused_merge = true;
    // The fused merge keeps a flag in shared memory, so the twin is pruned on its own.
    absl::StatusOr<Variant> f = Variant::Create(p, a, s);
    if (f.ok() && f->smem_bytes() <= limits.max_smem_per_block && CtasPerSm(*f, limits) >= 1 &&
        keys.insert(f->Key()).second)
      out.variants.push_back(*std::move(f));
  }
  return out;
}

std::optional<std::string> CompilePruneReason(const Variant& v, const std::vector<KernelResources>& kernels,
                                              const DeviceLimits& limits) {
  const std::string main_name = FamilyOf(v).KernelNames().front();
  for (const KernelResources& k : kernels) {
    if (k.registers > kMaxRegisters)
      return absl::StrCat(k.name, " uses ", k.registers, " registers (more than ", kMaxRegisters, ")");
    if (k.spill_store_bytes > 0 || k.spill_load_bytes > 0)
      return absl::StrCat(k.name, " spills (", k.spill_store_bytes, " bytes stored, ", k.spill_load_bytes,
                          " bytes loaded)");
    if (k.name != main_name) continue;
    // Registers are allocated per warp in units of 256 (8 per thread, rounded up).
    const int per_warp = (k.registers + 7) / 8 * 8 * 32;
    const int warps = v.threads() / 32;
    if (limits.regs_per_sm > 0 && per_warp * warps > limits.regs_per_sm)
      return absl::StrCat(k.name, ": ", k.registers, " registers x ", v.threads(),
                          " threads leave no CTA per SM");
    if (k.smem_static_bytes + v.smem_bytes() > limits.max_smem_per_block)
      return absl::StrCat(k.name, ": ", k.smem_static_bytes + v.smem_bytes(), " bytes of shared memory exceed ",
                          limits.max_smem_per_block, " per block");
  }
  return std::nullopt;
}

std::string CompileClassKey(const Variant& v) {
  // Split counts are a launch argument: variants differing only in them share one binary.
  if ((FamilyOf(v).fields() & kFieldSplits) == 0 || v.schedule().splits == 0) return v.Key();
  Schedule s = v.schedule();
  s.splits = 0;
  absl::StatusOr<Variant> base = Variant::Create(v.problem(), v.algorithm(), s);
  return base.ok() ? base->Key() : v.Key();
}

}  // namespace parallax::search
