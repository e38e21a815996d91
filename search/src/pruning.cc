#include "parallax/search/pruning.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "parallax/codegen/generator.h"
#include "parallax/codegen/kernel_family.h"

namespace parallax::search {
namespace {

constexpr int kMaxRegisters = 255;  // the ISA limit; ptxas spills beyond it

}  // namespace

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
  so.paths = o.paths;
  so.splits = o.splits;  // families without split counts ignore them
  StaticSpace out;
  for (Variant& v : EnumerateSpace(p, a, so, &out.stats)) {
    const bool twin = o.fused_merge && (FamilyOf(v).fields() & kFieldFusedMerge) && v.schedule().splits != 1;
    Schedule s = v.schedule();
    out.variants.push_back(std::move(v));
    if (!twin) continue;
    s.fused_merge = true;
    // The fused merge keeps a flag in shared memory, so the twin is pruned on its own.
    absl::StatusOr<Variant> f = Variant::Create(p, a, s);
    if (f.ok() && f->smem_bytes() <= limits.max_smem_per_block && CtasPerSm(*f, limits) >= 1)
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
