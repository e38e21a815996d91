// Prefill geometry, launch shape and generated source.
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "family_util.h"
#include "kernel_text.h"
#include "parallax/codegen/generator.h"
#include "prefill_family.h"

namespace parallax::prefill {

Geometry GeometryOf(const Problem& p, const Algorithm& a, const Schedule& s) {
  Geometry g;
  g.units = s.block_m / s.warps;
  g.mtiles = family::CeilDiv(g.units, family::UnitsPerMTile(a));
  g.ring_offset = family::QrSmemBytes(p, a, s, /*copies=*/s.warps, g.units);  // each warp its own rows
  g.smem_bytes = g.ring_offset + family::KvRingBytes(p, s);
  return g;
}

int Family::SmemBytes(const Variant& v) const {
  return GeometryOf(v.problem(), v.algorithm(), v.schedule()).smem_bytes;
}

LaunchShape Family::Launch(const Variant& v) const { return LaunchShape{v.threads(), SmemBytes(v), 0}; }

// CTA (query tile, head, batch).
Grid Family::MainGrid(const Variant& v, int batch, int seqlen_q, int) const {
  const int block_m = v.schedule().block_m;
  return Grid{(seqlen_q + block_m - 1) / block_m, v.problem().num_q_heads, batch};
}

std::vector<std::string> Family::KernelNames() const { return {parallax::KernelNames::kPrefill}; }

std::string Family::Summary(const Variant&) const {
  return "prefill (causal, mask aligned to the end of the keys)";
}

WarpTiling Family::Tiling(const Variant& v) const {
  const Geometry g = GeometryOf(v.problem(), v.algorithm(), v.schedule());
  return WarpTiling{g.units, "query rows per warp", g.mtiles, g.ring_offset};
}

std::string Family::Constants(const Variant& v) const {
  return absl::StrFormat("constexpr int kBlockM = %d;  // query rows per CTA\n", v.schedule().block_m);
}

std::string Family::Kernels(const Variant& v) const {
  namespace t = kernel_text;
  const bool mma = v.schedule().path == MathPath::kMma;
  const bool paged = v.problem().kv_layout == KvLayout::kPaged;
  return absl::StrCat(paged ? absl::StrCat(t::common_kv_paged, t::prefill_kv_paged)
                            : absl::StrCat(t::common_kv_contiguous, t::prefill_kv_contiguous),
                      t::prefill_sequence, t::common_tile_loader, t::common_kv_pipeline,
                      t::common_finalize, mma ? t::common_mma_core : t::common_fma_core,
                      mma ? t::prefill_kernel_mma : t::prefill_kernel_fma);
}

}  // namespace parallax::prefill

namespace parallax::prefill {
const KernelFamily& Instance() {
  static const Family kFamily;
  return kFamily;
}
}  // namespace parallax::prefill
