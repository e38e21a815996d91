// Backward geometry, launch shape and generated source.
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "family_util.h"
#include "kernel_text.h"
#include "parallax/codegen/generator.h"
#include "prefill_bwd_family.h"

namespace parallax::prefill_bwd {

namespace {
bool Learned(const Algorithm& a) { return a.probe == Probe::kLearned; }
}  // namespace

// Shared memory of plx_bwd_main, in this order (kernel_mma.cuh carves it the same way and
// static_asserts the total): K, V [block_n][D]; `stages` x Q, (R), dO [block_m][D] (16-bit,
// swizzled); dS1, (dS2) [block_n][ds_ld] (16-bit); `stages` x the step's row coefficients,
// 5 x block_m floats; bulk / det: the staged float32 dQ, (dR) rows, block_m x (D + 8) each.
Geometry GeometryOf(const Problem& p, const Algorithm& a, const Schedule& s) {
  Geometry g;
  g.dsplit = p.head_dim >= 256 ? 2 : 1;
  g.bands = s.block_n / 16;
  g.ds_ld = s.block_m + 8;  // 16 bytes of padding: the transposed ldmatrix rows spread over banks
  const int tiles = Learned(a) ? 2 : 1;
  g.smem_bytes = 2 * s.block_n * p.head_dim * 2 + s.stages * (tiles + 1) * s.block_m * p.head_dim * 2 +
                 tiles * s.block_n * g.ds_ld * 2 + s.stages * 5 * s.block_m * 4;
  if (s.dq_reduce != Schedule::DqReduce::kAtomic) g.smem_bytes += tiles * s.block_m * (p.head_dim + 8) * 4;
  return g;
}

int RegisterEstimate(const Problem& p, const Algorithm& a, const Schedule& s) {
  const Geometry g = GeometryOf(p, a, s);
  const int score_tiles = Learned(a) ? 3 : 2;        // s1, (s2), g: 16 keys x block_m each
  return score_tiles * s.block_m / 2 + p.head_dim / g.dsplit;  // + dK, dV: 16 x D/dsplit each
}

size_t WorkspaceBytes(const Problem& p, const Algorithm& a, long long tokens_q) {
  const size_t rows = static_cast<size_t>(tokens_q) * p.num_q_heads;
  return rows * sizeof(float) * (static_cast<size_t>(p.head_dim) * (Learned(a) ? 2 : 1) + 8);
}

int Family::SmemBytes(const Variant& v) const {
  return GeometryOf(v.problem(), v.algorithm(), v.schedule()).smem_bytes;
}

LaunchShape Family::Launch(const Variant& v) const {
  return LaunchShape{v.threads(), SmemBytes(v), kRowWarps * 32};
}

Grid Family::MainGrid(const Variant& v, int batch, int seqlen_k, int) const {
  const int block_n = v.schedule().block_n;
  return Grid{(seqlen_k + block_n - 1) / block_n, v.problem().num_kv_heads, batch};
}

std::vector<std::string> Family::KernelNames() const { return {kMainKernel, kPreprocessKernel, kPostprocessKernel}; }

std::string Family::Summary(const Variant&) const {
  return "prefill backward (dq, dr, dk, dv; causal aligned to the end of the keys, or none)";
}

WarpTiling Family::Tiling(const Variant& v) const {
  return WarpTiling{v.schedule().block_m, "query rows per step (every warp sees all of them)",
                    v.schedule().block_m / 16, 0};
}

std::string Family::Constants(const Variant& v) const {
  const Geometry g = GeometryOf(v.problem(), v.algorithm(), v.schedule());
  return absl::StrFormat(
      "constexpr int kBlockM = %d;  // query rows per step\n"
      "constexpr int kDSplit = %d;  // warps per 16-key band, each with kHeadDim / kDSplit columns of dK, dV\n"
      "constexpr int kDsLd = %d;    // row stride of the dS tiles (elements)\n"
      "constexpr int kSmemBytes = %d;\n"
      "constexpr int kRowWarps = %d;  // preprocess / postprocess: one query row per warp\n"
      "constexpr int kDqReduce = %d;  // dQ/dR partials: 0 red.add, 1 bulk rows, 2 bulk rows in key order\n",
      v.schedule().block_m, g.dsplit, g.ds_ld, g.smem_bytes, kRowWarps, static_cast<int>(v.schedule().dq_reduce));
}

std::string Family::Kernels(const Variant&) const {
  namespace t = kernel_text;
  return absl::StrCat(t::common_kv_contiguous, t::common_tile_loader, t::prefill_bwd_sequence,
                      t::prefill_bwd_rows, t::prefill_bwd_dq_reduce, t::prefill_bwd_kernel_mma);
}

}  // namespace parallax::prefill_bwd

namespace parallax::prefill_bwd {
const KernelFamily& Instance() {
  static const Family kFamily;
  return kFamily;
}
}  // namespace parallax::prefill_bwd
