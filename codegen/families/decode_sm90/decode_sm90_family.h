// The Hopper decode family (sm_90a): the decode problem of codegen/families/decode/ with each
// K and V tile brought in by TMA (one tensor-map box per 64 columns of the head dim, host
// encoded maps in PlxDecodeTmaParams) into a deeper shared-memory ring whose stages complete
// on mbarriers, and the split-KV merge done either inside a thread-block cluster through
// distributed shared memory (one launch, no partials in global memory) or by the decode
// family's second kernel. The math on a resident tile is the decode family's mma.sync core,
// addressing the 128-byte swizzle TMA writes (kv_tma.cuh).
// Path token "wgmma" names the sm_90a decode path (one family per mode and path); its MMAs
// are mma.sync. Paged K/V arrive in boxes that never cross a page (kv_tma.cuh); pages of
// fewer than kMinPageSize keys keep the decode family.
// Kernels: plx_decode (kernel.cuh, PlxDecodeTmaParams), plx_decode_merge (decode's
// split_merge.cuh, PlxDecodeParams).
#pragma once

#include "parallax/codegen/kernel_family.h"

namespace parallax::decode_sm90 {

// Cluster merges need every split of a head group in one cluster: 2..16 CTAs (above 8 the
// launch asks for a non-portable cluster size).
inline constexpr int kMaxClusterSplits = 16;

// Rows of q per CTA (heads per CTA x query tokens): what the accumulator registers and the
// cross-warp merge were sized and tested for.
inline constexpr int kMaxUnits = 16;

// Paged K/V: a TMA box holds gcd(page_size, block_n) keys of one page, a whole number of the
// 128-byte swizzle's 8-row atoms, so the boxes of a tile land where one contiguous box would.
// Smaller pages (1, 2, 4 keys) would need a box per key: the decode family gathers those.
inline constexpr int kMinPageSize = 8;
int KvBoxRows(const Problem& p, const Schedule& s);

// Derived geometry the schedule rules, the source and the launch share. Byte offsets into
// dynamic shared memory.
struct Geometry {
  int units;           // heads per CTA x query tokens; every warp carries all of them (kUnits)
  int mtiles;          // 16-row MMA tiles of stacked [q; r] rows (kMTiles)
  int keys_per_warp;   // keys of each tile one warp owns (kKeysPerWarp)
  int ctas_per_group;  // CTAs covering one GQA group (along y)
  int tile_bytes;      // one K (or V) tile in shared memory: block_n x head_dim, swizzled
  int ring_offset;     // after the q/r rows (laid out as a tile), from the 1024-byte aligned base
  int outbox_offset;   // cluster merge: the outbox, in the idle ring after the cross-warp merge
  int bars_offset;     // the stage mbarriers, after the ring (or the cross-warp merge buffer)
  int pub_offset;      // r.q per unit, then (cluster merge) the inbox
  int merge_share;     // cluster merge: outputs (of units x head_dim) each rank finalizes
  int msg_floats;      // cluster merge: one message, statistics and one share of O1 (O2)
  int smem_bytes;      // dynamic smem of plx_decode, with 1024 bytes to align the base
};
Geometry GeometryOf(const Problem& p, const Algorithm& a, const Schedule& s);

const KernelFamily& Instance();

class Family final : public KernelFamily {
 public:
  absl::string_view name() const override { return "decode_sm90"; }
  Mode mode() const override { return Mode::kDecode; }
  std::vector<MathPath> paths() const override { return {MathPath::kWgmma}; }
  bool RunsOn(int sm) const override { return sm == 90; }  // sm_90a code runs on sm_90 only
  // Searched by default on sm_90 (the GPU suite and sanitizers pass; it wins at small batch,
  // the portable decode at large): the tuner picks per bucket. Never the untuned default.
  int MaxStages() const override { return 8; }  // small tiles, deep rings: bytes in flight at B=1
  // Multi-token decode keeps every token of a head in one CTA: at head_dim 256 one MMA row
  // tile's accumulators (8 tokens of q and r) are all the registers allow.
  bool Serves(const Problem& p) const override {
    return (p.kv_layout == KvLayout::kContiguous || p.page_size >= kMinPageSize) &&
           p.queries <= MaxQueries(p.head_dim);
  }
  static int MaxQueries(int head_dim) { return head_dim >= 256 ? kMaxUnits / 2 : kMaxUnits; }
  const char* ArchSuffix() const override { return "a"; }
  Abi abi() const override { return Abi::kDecodeTma; }
  TmaBoxes Boxes(const Variant& v) const override { return TmaBoxes{0, KvBoxRows(v.problem(), v.schedule())}; }
  std::string Math(const Variant&) const override;
  Grid Cluster(const Variant& v) const override;
  unsigned fields() const override;
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

}  // namespace parallax::decode_sm90
