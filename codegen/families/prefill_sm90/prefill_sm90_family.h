// The Hopper prefill family (sm_90a): the prefill problem of codegen/families/prefill/ on
// warpgroup MMA, TMA and mbarriers, warp-specialized. A producer warpgroup loads the CTA's
// [q; r] tile once and streams K/V tiles into a ring; consumer warpgroups own 64 MMA rows
// each (Parallax: 32 queries, q rows over r rows per 8; softmax: 64 queries).
// Kernel: plx_prefill (kernel.cuh), launched with PlxPrefillTmaParams.
#pragma once

#include "parallax/codegen/kernel_family.h"

namespace parallax::prefill_sm90 {

// Derived geometry the schedule rules, the source and the launch share. Offsets are from
// the first 1024-byte aligned byte of dynamic shared memory (the 128-byte swizzle's period).
struct Geometry {
  int consumers;      // consumer warpgroups
  int queries_per_wg; // 32 (Parallax) or 64 (softmax)
  int qr_bytes;       // every consumer's 64 x D operand tile
  int tile_bytes;     // one K (or V) tile: block_n x D
  int ring_offset;    // = qr_bytes
  int bars_offset;    // the mbarriers after the ring
  int smem_bytes;     // dynamic smem asked for, with the alignment slack
};
Geometry GeometryOf(const Problem& p, const Algorithm& a, const Schedule& s);

// Paged K/V (extend) arrive in TMA boxes that never cross a page: gcd(page_size, block_n)
// keys each (kv_pages.cuh); contiguous K/V in one box of block_n keys. Pages of fewer than
// kMinPageSize keys would take too many boxes a tile (and registers for their page numbers
// in the producer): the portable family serves those.
inline constexpr int kMinPageSize = 16;
int KvBoxRows(const Problem& p, const Schedule& s);

const KernelFamily& Instance();

class Family final : public KernelFamily {
 public:
  absl::string_view name() const override { return "prefill_sm90"; }
  Mode mode() const override { return Mode::kPrefill; }
  std::vector<MathPath> paths() const override { return {MathPath::kWgmma}; }
  bool RunsOn(int sm) const override { return sm == 90; }  // sm_90a code runs on sm_90 only
  bool Serves(const Problem& p) const override {
    return p.kv_layout == KvLayout::kContiguous || p.page_size >= kMinPageSize;
  }
  const char* ArchSuffix() const override { return "a"; }
  Abi abi() const override { return Abi::kPrefillTma; }
  TmaBoxes Boxes(const Variant& v) const override;
  unsigned fields() const override { return kFieldBlockM | kFieldPingPong | kFieldPersistent; }
  bool Persistent(const Variant& v) const override { return v.schedule().persistent; }
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
  Grid MainGrid(const Variant& v, int batch, int seqlen_q, int num_splits) const override;
  std::vector<std::string> KernelNames() const override;
  std::string Summary(const Variant& v) const override;
  WarpTiling Tiling(const Variant& v) const override;
  std::string Constants(const Variant& v) const override;
  std::string Kernels(const Variant& v) const override;
};

}  // namespace parallax::prefill_sm90
