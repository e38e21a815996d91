// Which candidates are worth timing: the static space for the GPU in hand, then what ptxas
// says about each compiled kernel.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "parallax/codegen/kernel_family.h"
#include "parallax/codegen/space.h"
#include "parallax/codegen/variant.h"
#include "parallax/runtime/device.h"
#include "parallax/runtime/nvrtc_compiler.h"

namespace parallax::search {

// The arch preset (threads and registers per SM), with the shared memory numbers the driver
// reports for this GPU, which are what actually bounds a launch. Unknown archs start from
// the sm_90 preset.
DeviceLimits LimitsFor(const DeviceInfo& dev);

// ---- which families a device runs ----
// The compute capability in an arch name, as KernelFamily::RunsOn takes it: "sm_90" and
// "sm_90a" are 90, "sm_120" is 120; anything else is 0 (no device known: the portable choice).
int SmOfArch(std::string_view arch);

// The arch NVRTC must compile a family's variants for on a device of `device_arch` ("sm_90"):
// the device's arch plus the family's suffix ("sm_90a" for the wgmma family), as
// Runtime::Load does.
std::string CompileArchFor(const KernelFamily& f, const std::string& device_arch);

// Why a family's variants are not compiled or timed for `arch` (the family does not RunsOn
// it), or nullopt when they run there.
std::optional<std::string> NotOnDeviceReason(const KernelFamily& f, std::string_view arch);

// The math paths some registered family of `mode` serves and runs on a device of compute
// capability sm (cc_major * 10 + cc_minor; 0: no device known, the portable families only),
// in MathPath order. Prefill on sm_90: mma, fma and wgmma; on sm_80 or without a device: mma
// and fma.
std::vector<MathPath> PathsFor(Mode mode, int sm);

// The paths to enumerate for `mode` on a device of `arch`: `wanted` (empty: PathsFor(mode,
// SmOfArch(arch))) less those whose family does not run there; `skipped` says, one line a path,
// why each left-out path is gone ("path wgmma: the prefill_sm90 family does not run on sm_80
// (it runs on sm_90 only)").
struct DevicePaths {
  std::vector<MathPath> paths;
  std::vector<std::string> skipped;
};
DevicePaths PathsOnDevice(Mode mode, const std::vector<MathPath>& wanted, std::string_view arch);

// The schedule axes the tuner searches beyond EnumerateSpace's defaults.
struct TuneSpaceOptions {
  // Decode split-KV counts; 0 = chosen at launch from occupancy (the runtime's heuristic).
  std::vector<int> splits = {0, 1, 2, 4, 8, 16, 32};
  bool fused_merge = true;  // also try the fused split merge where splits != 1
  // Math paths to search. Empty: every path a family of the problem's mode serves on the
  // device (PathsFor(mode, SmOfArch(limits.arch))): on an sm_90 GPU prefill adds wgmma to mma
  // and fma. An explicit list is kept as given, less paths whose family does not run there.
  std::vector<MathPath> paths;
};

struct StaticSpace {
  std::vector<Variant> variants;  // EnumerateSpace order, fused twins right after their base
  SpaceStats stats;               // of the EnumerateSpace call (smem / occupancy pruning)
  // Asked-for paths left out because their family does not run on the device: the valid
  // variants they would have added (not in stats) and one line a path saying why.
  int not_on_device = 0;
  std::vector<std::string> skipped;
};

// EnumerateSpace with pruning by `limits` (smem per block opt-in, >= 1 CTA per SM), over the
// paths (PathsOnDevice for limits.arch) and split counts of `o`, plus fused-merge twins.
// Every variant's family runs on limits.arch.
StaticSpace BuildStaticSpace(const Problem& p, const Algorithm& a, const DeviceLimits& limits,
                             const TuneSpaceOptions& o);

// Why a compiled variant should not be timed, or nullopt to keep it: any kernel of the module
// spilling, using more than 255 registers, or leaving no room for one CTA of the main
// kernel per SM once registers are counted.
std::optional<std::string> CompilePruneReason(const Variant& v, const std::vector<KernelResources>& kernels,
                                              const DeviceLimits& limits);

// The compile class of a variant: its key with the split count reset to auto. Split counts
// are a launch argument, so every variant of a class has the same binary and ptxas report.
std::string CompileClassKey(const Variant& v);

}  // namespace parallax::search
