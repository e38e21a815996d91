// Which candidates are worth timing: the static space for the GPU in hand, then what ptxas
// says about each compiled kernel.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "parallax/codegen/space.h"
#include "parallax/codegen/variant.h"
#include "parallax/runtime/device.h"
#include "parallax/runtime/nvrtc_compiler.h"

namespace parallax::search {

// The arch preset (threads and registers per SM), with the shared memory numbers the driver
// reports for this GPU, which are what actually bounds a launch. Unknown archs start from
// the sm_90 preset.
DeviceLimits LimitsFor(const DeviceInfo& dev);

// The schedule axes the tuner searches beyond EnumerateSpace's defaults.
struct TuneSpaceOptions {
  // Decode split-KV counts; 0 = chosen at launch from occupancy (the runtime's heuristic).
  std::vector<int> splits = {0, 1, 2, 4, 8, 16, 32};
  bool fused_merge = true;  // also try the fused split merge where splits != 1
  std::vector<MathPath> paths = {MathPath::kMma, MathPath::kFma};
};

struct StaticSpace {
  std::vector<Variant> variants;  // EnumerateSpace order, fused twins right after their base
  SpaceStats stats;               // of the EnumerateSpace call (smem / occupancy pruning)
};

// EnumerateSpace with pruning by `limits` (smem per block opt-in, >= 1 CTA per SM), over the
// split counts of `o`, plus fused-merge twins.
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
