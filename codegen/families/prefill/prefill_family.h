// The prefill (forward) family: causal attention over whole sequences, padded or packed
// (cu_seqlens), the mask aligned to the end of the keys, an optional sliding window.
// Kernel: plx_prefill (kernel_mma.cuh / kernel_fma.cuh).
#pragma once

#include "parallax/codegen/kernel_family.h"

namespace parallax::prefill {

// Derived geometry the schedule rules, the source and the launch share.
struct Geometry {
  int units;        // query rows per warp (kUnits)
  int mtiles;       // mma path: 16-row MMA tiles of stacked [q; r] rows per warp (kMTiles)
  int ring_offset;  // where the K/V ring starts in dynamic smem (after every warp's q/r rows)
  int smem_bytes;   // dynamic smem of plx_prefill
};
Geometry GeometryOf(const Problem& p, const Algorithm& a, const Schedule& s);

const KernelFamily& Instance();  // the one instance, for the registry

class Family final : public KernelFamily {
 public:
  absl::string_view name() const override { return "prefill"; }
  Mode mode() const override { return Mode::kPrefill; }
  std::vector<MathPath> paths() const override { return {MathPath::kMma, MathPath::kFma}; }
  unsigned fields() const override { return kFieldBlockM; }
  absl::Status Validate(const Problem& p, const Algorithm& a, const Schedule& s) const override;
  std::string PrintSchedule(const Schedule& s) const override;
  absl::Status ParseSchedule(std::vector<absl::string_view> tokens, Schedule* s) const override;
  Schedule Canonical(const Problem& p, const Algorithm& a, Schedule s) const override;
  Schedule Default(const Problem& p, const Algorithm& a) const override;
  void ForEachCandidate(const Problem& p, const Algorithm& a, const SpaceOptions& o,
                        const std::function<void(const Schedule&)>& consider) const override;
  int SmemBytes(const Variant& v) const override;
  int StaticSmemBytes(const Variant&) const override { return 0; }  // plx_prefill has none
  LaunchShape Launch(const Variant& v) const override;
  Grid MainGrid(const Variant& v, int batch, int seqlen_q, int num_splits) const override;
  std::vector<std::string> KernelNames() const override;
  std::string Summary(const Variant& v) const override;
  WarpTiling Tiling(const Variant& v) const override;
  std::string Constants(const Variant& v) const override;
  std::string Kernels(const Variant& v) const override;
};

}  // namespace parallax::prefill
