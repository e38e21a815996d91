// Decode geometry, launch shape and generated source.
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "decode_family.h"
#include "family_util.h"
#include "kernel_text.h"
#include "parallax/codegen/generator.h"

namespace parallax::decode {

Geometry GeometryOf(const Problem& p, const Algorithm& a, const Schedule& s) {
  Geometry g;
  g.units = s.heads_per_cta;
  g.mtiles = family::CeilDiv(g.units, family::UnitsPerMTile(a));
  g.keys_per_warp = s.block_n / s.warps;
  g.ctas_per_group = p.group_size() / s.heads_per_cta;
  g.ring_offset = family::QrSmemBytes(p, a, s, /*copies=*/1, g.units);  // warps share the q/r rows
  // After the main loop the cross-warp merge reuses the ring: O1, O2 and 4 statistics per
  // (warp, head).
  const int merge = s.warps * g.units * (2 * p.head_dim + 4) * 4;
  g.smem_bytes = g.ring_offset + std::max(family::KvRingBytes(p, s), merge);
  return g;
}

int Family::SmemBytes(const Variant& v) const {
  return GeometryOf(v.problem(), v.algorithm(), v.schedule()).smem_bytes;
}

// float s_rq[kUnits] in plx_decode, which ptxas pads to 128 bytes ahead of the dynamic buffer.
int Family::StaticSmemBytes(const Variant& v) const { return (4 * v.schedule().heads_per_cta + 127) / 128 * 128; }

LaunchShape Family::Launch(const Variant& v) const {
  return LaunchShape{v.threads(), SmemBytes(v), /*merge_threads=*/128};
}

// CTA (split, kv head x head pack, batch).
Grid Family::MainGrid(const Variant& v, int batch, int, int num_splits) const {
  const Geometry g = GeometryOf(v.problem(), v.algorithm(), v.schedule());
  return Grid{num_splits, v.problem().num_kv_heads * g.ctas_per_group, batch};
}

std::vector<std::string> Family::KernelNames() const {
  return {parallax::KernelNames::kDecode, parallax::KernelNames::kDecodeMerge};
}

std::string Family::Summary(const Variant&) const { return "decode (one query token per sequence, split-KV)"; }

WarpTiling Family::Tiling(const Variant& v) const {
  const Geometry g = GeometryOf(v.problem(), v.algorithm(), v.schedule());
  return WarpTiling{g.units, "query heads per CTA (GQA packing); every warp carries all", g.mtiles, g.ring_offset};
}

std::string Family::Constants(const Variant& v) const {
  const Schedule& s = v.schedule();
  const Geometry g = GeometryOf(v.problem(), v.algorithm(), s);
  return absl::StrFormat("constexpr int kHeadsPerCta = kUnits;\n"
                         "constexpr int kCtasPerGroup = kGroup / kHeadsPerCta;\n"
                         "constexpr int kKeysPerWarp = %d;  // keys of each tile a warp owns\n"
                         "constexpr int kMergeThreads = 128;\n"
                         "constexpr bool kFusedMerge = %s;  // last CTA merges the splits\n"
                         "constexpr int kSmemBytes = %d;  // dynamic shared memory of plx_decode\n"
                         "constexpr int kTestFault = %d;  // test-only: 1 illegal address, 2 hang\n",
                         g.keys_per_warp, s.fused_merge ? "true" : "false", g.smem_bytes,
                         static_cast<int>(s.test_fault));
}

std::string Family::Kernels(const Variant& v) const {
  namespace t = kernel_text;
  const bool mma = v.schedule().path == MathPath::kMma;
  const bool paged = v.problem().kv_layout == KvLayout::kPaged;
  return absl::StrCat(paged ? absl::StrCat(t::common_kv_paged, t::decode_kv_paged) : absl::StrCat(t::common_kv_contiguous, t::decode_kv_contiguous),
                      t::common_tile_loader, t::common_kv_pipeline, t::common_finalize,
                      mma ? t::common_mma_core : t::common_fma_core, t::decode_decode_common,
                      mma ? t::decode_mma_phases : "", t::decode_fused_merge,
                      mma ? t::decode_kernel_mma : t::decode_kernel_fma,
                      t::decode_split_merge);
}

}  // namespace parallax::decode

namespace parallax::decode {
const KernelFamily& Instance() {
  static const Family kFamily;
  return kFamily;
}
}  // namespace parallax::decode
