// The prefill backward family (docs/backward.md, "The kernels"): the gradients dq, dr, dk, dv
// of a prefill, from the forward's out, lse, tbar and vbar, on mma.sync (m16n8k16).
// Kernels: plx_bwd_main (kernel_mma.cuh), plx_bwd_preprocess and plx_bwd_postprocess
// (rows.cuh); launch ABI PlxPrefillBwdParams (kernel_abi.h).
#pragma once

#include "parallax/codegen/kernel_family.h"

namespace parallax::prefill_bwd {

inline constexpr const char* kMainKernel = "plx_bwd_main";
inline constexpr const char* kPreprocessKernel = "plx_bwd_preprocess";
inline constexpr const char* kPostprocessKernel = "plx_bwd_postprocess";
// Warps per CTA of the per-row kernels (preprocess, postprocess): one query row each.
inline constexpr int kRowWarps = 4;

// Derived geometry the schedule rules, the source and the launch share.
struct Geometry {
  int dsplit;      // warps sharing one 16-key band, each owning head_dim / dsplit columns of dK, dV
  int bands;       // 16-key bands per CTA (block_n / 16)
  int ds_ld;       // row stride (elements) of the dS tiles in shared memory
  int smem_bytes;  // dynamic smem of plx_bwd_main
};
Geometry GeometryOf(const Problem& p, const Algorithm& a, const Schedule& s);
// Live fp32 registers per thread of the main kernel's accumulators and score tiles.
int RegisterEstimate(const Problem& p, const Algorithm& a, const Schedule& s);
// Float32 workspace (bytes) of a backward over `tokens_q` query tokens (kernel_abi.h).
size_t WorkspaceBytes(const Problem& p, const Algorithm& a, long long tokens_q);

const KernelFamily& Instance();  // the one instance, for the registry

class Family final : public KernelFamily {
 public:
  absl::string_view name() const override { return "prefill_bwd"; }
  Mode mode() const override { return Mode::kBackward; }
  std::vector<MathPath> paths() const override { return {MathPath::kMma}; }
  bool Serves(const Problem& p) const override { return p.kv_layout == KvLayout::kContiguous; }
  unsigned fields() const override { return kFieldBlockM | kFieldDqReduce; }
  absl::Status Validate(const Problem& p, const Algorithm& a, const Schedule& s) const override;
  std::string PrintSchedule(const Schedule& s) const override;
  absl::Status ParseSchedule(std::vector<absl::string_view> tokens, Schedule* s) const override;
  Schedule Canonical(const Problem& p, const Algorithm& a, Schedule s) const override;
  Schedule Default(const Problem& p, const Algorithm& a) const override;
  void ForEachCandidate(const Problem& p, const Algorithm& a, const SpaceOptions& o,
                        const std::function<void(const Schedule&)>& consider) const override;
  int SmemBytes(const Variant& v) const override;
  int StaticSmemBytes(const Variant&) const override { return 0; }
  LaunchShape Launch(const Variant& v) const override;
  // CTA (key block, kv head, sequence): for this family seqlen_q is the key count (Lk).
  Grid MainGrid(const Variant& v, int batch, int seqlen_k, int num_splits) const override;
  std::vector<std::string> KernelNames() const override;
  std::string Summary(const Variant& v) const override;
  WarpTiling Tiling(const Variant& v) const override;
  std::string Constants(const Variant& v) const override;
  std::string Kernels(const Variant& v) const override;
};

}  // namespace parallax::prefill_bwd
