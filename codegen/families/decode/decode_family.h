// The decode family: one query token per sequence against its KV cache (contiguous or
// paged), split-KV across CTAs, GQA heads packed per CTA, an optional fused split merge.
// Kernels: plx_decode (kernel_mma.cuh / kernel_fma.cuh) and plx_decode_merge (split_merge.cuh).
#pragma once

#include "parallax/codegen/kernel_family.h"

namespace parallax::decode {

// Derived geometry the schedule rules, the source and the launch share.
struct Geometry {
  int units;            // query heads per CTA; every warp carries all of them (kUnits)
  int mtiles;           // mma path: 16-row MMA tiles of stacked [q; r] rows (kMTiles)
  int keys_per_warp;    // keys of each tile one warp owns (kKeysPerWarp)
  int ctas_per_group;   // CTAs covering one GQA group
  int ring_offset;      // where the K/V ring starts in dynamic smem (after the q/r rows)
  int smem_bytes;       // dynamic smem of plx_decode
};
Geometry GeometryOf(const Problem& p, const Algorithm& a, const Schedule& s);

const KernelFamily& Instance();  // the one instance, for the registry

class Family final : public KernelFamily {
 public:
  absl::string_view name() const override { return "decode"; }
  Mode mode() const override { return Mode::kDecode; }
  std::vector<MathPath> paths() const override { return {MathPath::kMma, MathPath::kFma}; }
  // One query token per sequence: multi-token decode (Problem::queries > 1) is decode_sm90's,
  // or runs as extend on the prefill kernels.
  bool Serves(const Problem& p) const override { return p.queries == 1; }
  unsigned fields() const override;
  absl::Status Validate(const Problem& p, const Algorithm& a, const Schedule& s) const override;
  std::string PrintSchedule(const Schedule& s) const override;
  absl::Status ParseSchedule(std::vector<absl::string_view> tokens, Schedule* s) const override;
  Schedule Canonical(const Problem& p, const Algorithm& a, Schedule s) const override;
  Schedule Default(const Problem& p, const Algorithm& a) const override;
  void ForEachCandidate(const Problem& p, const Algorithm& a, const SpaceOptions& o,
                        const std::function<void(const Schedule&)>& consider) const override;
  int SmemBytes(const Variant& v) const override;
  int StaticSmemBytes(const Variant& v) const override;
  LaunchShape Launch(const Variant& v) const override;
  Grid MainGrid(const Variant& v, int batch, int seqlen_q, int num_splits) const override;
  std::vector<std::string> KernelNames() const override;
  std::string Summary(const Variant& v) const override;
  WarpTiling Tiling(const Variant& v) const override;
  std::string Constants(const Variant& v) const override;
  std::string Kernels(const Variant& v) const override;
};

}  // namespace parallax::decode
