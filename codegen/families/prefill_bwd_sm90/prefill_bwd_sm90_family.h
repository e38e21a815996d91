// The Hopper prefill backward family (sm_90a), first version: the gradients of
// codegen/families/prefill_bwd/ (same launch ABI PlxPrefillBwdParams, same per-row kernels
// plx_bwd_preprocess / plx_bwd_postprocess from prefill_bwd/rows.cuh, same kernel names, so
// runtime/src/backward.cc runs either family unchanged) with the main kernel on warpgroup MMA
// (kernel.cuh's phases, run by kernel_sync.cuh, or by kernel_ws.cuh when warps is 12: a
// producer warpgroup feeding two consumer warpgroups). Head dims 64, 128 and 256 (two
// warpgroups per 64 keys, each with half of dK, dV); the ordered (det) dQ reduction stays on
// prefill_bwd. docs/backward.md, "The sm_90a kernels (first version)".
#pragma once

#include "parallax/codegen/kernel_family.h"

namespace parallax::prefill_bwd_sm90 {

inline constexpr int kKeysPerWarpgroup = 64;  // the M of every wgmma: keys as MMA rows

// Derived geometry the schedule rules, the source and the launch share. Offsets are bytes
// from the first 1024-byte aligned byte of dynamic shared memory.
struct Geometry {
  bool producer;   // warp-specialized (warps 12): warpgroup 0 loads for the others
  int warpgroups;  // that compute (the producer not counted); kDSplit of them share 64 keys
  int dsplit;      // warpgroups per 64 keys (head_dim 256: 2, each with half of dK, dV)
  int ring;        // K, V end here; kStages x (Q, (R), dO) follow
  int ds;          // dS1, (dS2) [query][key] tiles, ds_slots of them
  int ds_slots;    // 2 when warp-specialized: one consumer may run a step ahead
  int coef;        // kStages x 5 x block_m row coefficients (floats)
  int stage;       // bulk: the staged fp32 dQ, (dR) rows
  int bars;        // warp-specialized: full, empty per ring slot and the K/V tile's mbarriers
  int smem_bytes;  // dynamic smem asked for, with the alignment slack
};
// setmaxnreg of the warp-specialized kernel: 384 threads launch with 168 registers each
// (__launch_bounds__(384, 1)); the producer gives all but 24 up, the consumers take 240,
// exactly the pool (24 + 2 x 240 = 3 x 168).
inline constexpr int kProducerRegs = 24;
inline constexpr int kConsumerRegs = 240;
Geometry GeometryOf(const Problem& p, const Algorithm& a, const Schedule& s);
// Live fp32 registers per thread of the accumulators (dK, dV) and the score tiles.
int RegisterEstimate(const Problem& p, const Algorithm& a, const Schedule& s);

const KernelFamily& Instance();

class Family final : public KernelFamily {
 public:
  absl::string_view name() const override { return "prefill_bwd_sm90"; }
  Mode mode() const override { return Mode::kBackward; }
  std::vector<MathPath> paths() const override { return {MathPath::kWgmma}; }
  bool RunsOn(int sm) const override { return sm == 90; }  // sm_90a code runs on sm_90 only
  bool Serves(const Problem& p) const override {
    return p.kv_layout == KvLayout::kContiguous && (p.head_dim == 64 || p.head_dim == 128 || p.head_dim == 256);
  }
  const char* ArchSuffix() const override { return "a"; }
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
  // CTA (key block, kv head, sequence), as prefill_bwd: seqlen_q is the key count (Lk).
  Grid MainGrid(const Variant& v, int batch, int seqlen_k, int num_splits) const override;
  std::vector<std::string> KernelNames() const override;
  std::string Summary(const Variant& v) const override;
  WarpTiling Tiling(const Variant& v) const override;
  std::string Constants(const Variant& v) const override;
  std::string Kernels(const Variant& v) const override;
};

}  // namespace parallax::prefill_bwd_sm90
