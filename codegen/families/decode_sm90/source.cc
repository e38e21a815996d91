// Hopper decode: launch shape, cluster and generated source.
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "decode_sm90_family.h"
#include "kernel_text.h"
#include "parallax/codegen/generator.h"

namespace parallax::decode_sm90 {

int Family::SmemBytes(const Variant& v) const {
  return GeometryOf(v.problem(), v.algorithm(), v.schedule()).smem_bytes;
}

LaunchShape Family::Launch(const Variant& v) const {
  return LaunchShape{v.threads(), SmemBytes(v), /*merge_threads=*/128};
}

// The cluster merge puts every split of one head group in one cluster along x.
Grid Family::Cluster(const Variant& v) const {
  const Schedule& s = v.schedule();
  return s.fused_merge ? Grid{s.splits, 1, 1} : Grid{};
}

// CTA (split, kv head x head pack, batch), as in the decode family; a cluster merge has
// exactly its schedule's splits.
Grid Family::MainGrid(const Variant& v, int batch, int, int num_splits) const {
  const Geometry g = GeometryOf(v.problem(), v.algorithm(), v.schedule());
  const int x = v.schedule().fused_merge ? v.schedule().splits : num_splits;
  return Grid{x, v.problem().num_kv_heads * g.ctas_per_group, batch};
}

std::vector<std::string> Family::KernelNames() const {
  return {parallax::KernelNames::kDecode, parallax::KernelNames::kDecodeMerge};
}

std::string Family::Summary(const Variant& v) const {
  const char* kv = v.problem().kv_layout == KvLayout::kPaged ? "TMA K/V ring, a box per page" : "TMA K/V ring";
  const int tq = v.problem().queries;
  return absl::StrCat("decode on sm_90a (", tq == 1 ? std::string("one query token") : absl::StrCat(tq, " query tokens"),
                      " per sequence; ", kv,
                      v.schedule().fused_merge ? ", splits merged in a cluster)" : ", split-KV)");
}

// Path wgmma names the family, but its MMAs are the decode family's mma.sync core.
std::string Family::Math(const Variant& v) const {
  return absl::StrCat("mma.sync m16n8k16 tensor cores; K/V by TMA into an mbarrier ring",
                      v.schedule().fused_merge ? "; splits merged through distributed shared memory" : "");
}

WarpTiling Family::Tiling(const Variant& v) const {
  const Geometry g = GeometryOf(v.problem(), v.algorithm(), v.schedule());
  return WarpTiling{g.units, "query heads per CTA (GQA packing) x query tokens; every warp carries all", g.mtiles,
                    g.ring_offset};
}

std::string Family::Constants(const Variant& v) const {
  const Schedule& s = v.schedule();
  const Geometry g = GeometryOf(v.problem(), v.algorithm(), s);
  return absl::StrFormat(
      "constexpr int kMTiles = %d;        // 16-row MMA tiles of stacked [q; r] rows\n"
      "constexpr int kHeadsPerCta = kUnits / kTokens;\n"
      "constexpr int kCtasPerGroup = kGroup / kHeadsPerCta;\n"
      "constexpr int kKeysPerWarp = %d;  // keys of each tile a warp owns\n"
      "constexpr int kDChunks = kHeadDim / 64;  // 128-byte swizzle chunks (TMA boxes) per row\n"
      "constexpr int kTileBytes = %d;    // one K or V tile: kDChunks boxes of kBlockN x 128 bytes\n"
      "constexpr int kMergeThreads = 128;\n"
      "constexpr bool kClusterMerge = %s;  // splits merge inside the cluster (no second kernel)\n"
      "constexpr int kClusterSplits = %d;  // CTAs per cluster along x (= splits) when they do\n"
      "constexpr int kMergeShare = %d;   // cluster merge: outputs each rank finalizes\n"
      "constexpr int kMsgFloats = %d;    // cluster merge: one message (statistics, O1 and O2 shares)\n"
      "constexpr int kSmemOutbox = %d;   // cluster merge: the outbox in the idle ring (byte offset)\n"
      "constexpr int kSmemBars = %d;     // the stage mbarriers, then the inbox's (byte offset)\n"
      "constexpr int kSmemPub = %d;      // r.q per unit, then the published partial (byte offset)\n"
      "constexpr int kRqFloats = %d;\n"
      "constexpr int kSmemBytes = %d;    // dynamic shared memory of plx_decode\n"
      "constexpr int kTestFault = 0;     // decode_common.cuh: no test-only faults here\n"
      "%s"
      "constexpr int kPageBox = %d;      // keys per TMA box: a page's (paged) or the tile's\n",
      g.mtiles, g.keys_per_warp, g.tile_bytes, s.fused_merge ? "true" : "false", s.fused_merge ? s.splits : 1,
      g.merge_share, g.msg_floats, g.outbox_offset, g.bars_offset, g.pub_offset, (g.units + 3) / 4 * 4, g.smem_bytes,
      v.problem().kv_layout == KvLayout::kPaged ? "" : "constexpr int kPageSize = 0;     // contiguous K/V\n",
      KvBoxRows(v.problem(), s));
}

std::string Family::Kernels(const Variant&) const {
  namespace t = kernel_text;
  return absl::StrCat(t::common_mma_sync, t::sm90_async, t::decode_sm90_kv_tma, t::common_finalize, t::common_mma_core, t::decode_decode_common,
                      t::decode_mma_phases, t::decode_split_merge, t::decode_sm90_warp_tile, t::decode_sm90_cluster_merge,
                      t::decode_sm90_kernel);
}

}  // namespace parallax::decode_sm90

namespace parallax::decode_sm90 {
const KernelFamily& Instance() {
  static const Family kFamily;
  return kFamily;
}
}  // namespace parallax::decode_sm90
