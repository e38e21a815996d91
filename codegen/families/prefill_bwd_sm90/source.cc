// Hopper backward: geometry, launch shape and generated source. The per-row kernels and the
// sequence / dQ-reduction helpers are prefill_bwd's .cuh files, emitted from their folder.
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "kernel_text.h"
#include "parallax/codegen/generator.h"
#include "prefill_bwd/prefill_bwd_family.h"
#include "prefill_bwd_sm90_family.h"
#include "sm90_wgmma.h"

namespace parallax::prefill_bwd_sm90 {

namespace {
bool Learned(const Algorithm& a) { return a.probe == Probe::kLearned; }
}  // namespace

// Shared memory, in this order (kernel.cuh static_asserts the same): K, V [block_n][D];
// `stages` x Q, (R), dO [block_m][D]; dS1, (dS2) [block_m][block_n] (16-bit, 128-byte
// swizzle, each a multiple of 1024 bytes; two slots when warp-specialized); `stages` x 5 x
// block_m row coefficients; bulk: the staged dQ, (dR) rows, block_m x (D + 8) floats each;
// warp-specialized: 2 x stages + 1 mbarriers. 1024 bytes of slack align the base.
Geometry GeometryOf(const Problem& p, const Algorithm& a, const Schedule& s) {
  Geometry g;
  const int tiles = Learned(a) ? 2 : 1;
  g.producer = s.warps == 12;
  g.warpgroups = s.warps / 4 - (g.producer ? 1 : 0);
  g.dsplit = p.head_dim > 128 ? 2 : 1;
  g.ring = 2 * s.block_n * p.head_dim * 2;
  g.ds = g.ring + s.stages * (tiles + 1) * s.block_m * p.head_dim * 2;
  g.ds_slots = g.producer ? 2 : 1;
  g.coef = g.ds + g.ds_slots * tiles * s.block_m * s.block_n * 2;
  g.stage = g.coef + s.stages * 5 * s.block_m * 4;
  const int staged = s.dq_reduce != Schedule::DqReduce::kAtomic ? tiles * s.block_m * (p.head_dim + 8) * 4 : 0;
  g.bars = g.stage + staged;
  g.smem_bytes = 1024 + g.bars + (g.producer ? 8 * (2 * s.stages + 1) : 0);
  return g;
}

int Family::SmemBytes(const Variant& v) const {
  return GeometryOf(v.problem(), v.algorithm(), v.schedule()).smem_bytes;
}

LaunchShape Family::Launch(const Variant& v) const {
  return LaunchShape{v.threads(), SmemBytes(v), prefill_bwd::kRowWarps * 32};
}

Grid Family::MainGrid(const Variant& v, int batch, int seqlen_k, int) const {
  const int block_n = v.schedule().block_n;
  return Grid{(seqlen_k + block_n - 1) / block_n, v.problem().num_kv_heads, batch};
}

// The names runtime/src/backward.cc launches: main, preprocess (as `merge`), postprocess.
std::vector<std::string> Family::KernelNames() const {
  return {prefill_bwd::kMainKernel, prefill_bwd::kPreprocessKernel, prefill_bwd::kPostprocessKernel};
}

std::string Family::Summary(const Variant& v) const {
  return absl::StrCat("prefill backward on sm_90a (dq, dr, dk, dv; wgmma, 64 keys per warpgroup or two",
                      GeometryOf(v.problem(), v.algorithm(), v.schedule()).producer
                          ? ", fed by a producer warpgroup"
                          : "",
                      "; causal aligned to the end of the keys, or none)");
}

WarpTiling Family::Tiling(const Variant& v) const {
  return WarpTiling{v.schedule().block_m, "query rows per step (every warpgroup sees all of them)", 0, 0};
}

std::string Family::Constants(const Variant& v) const {
  const Geometry g = GeometryOf(v.problem(), v.algorithm(), v.schedule());
  // The register split exists only in the warp-specialized kernel (an unused constant is a
  // front-end warning, and the compile tests fail on those).
  const std::string regs =
      g.producer ? absl::StrFormat("constexpr int kProducerRegs = %d, kConsumerRegs = %d;  // setmaxnreg\n",
                                   kProducerRegs, kConsumerRegs)
                 : std::string();
  return absl::StrFormat(
      "constexpr int kBlockM = %d;    // query rows per step: the N of the score wgmmas\n"
      "constexpr int kWgs = %d;       // warpgroups that compute (a producer warpgroup not counted)\n"
      "constexpr bool kWarpSpecialized = %s;  // warpgroup 0 loads for the others (kernel_ws.cuh)\n"
      "constexpr int kDSplit = %d;    // warpgroups per 64 keys, each with kHeadDim / kDSplit columns of dK, dV\n"
      "constexpr int kDChunks = kHeadDim / 64;  // 128-byte swizzle chunks along the head dim\n"
      "constexpr int kSmemRing = %d;  // byte offsets from the 1024-byte aligned base\n"
      "constexpr int kSmemDs = %d;\n"
      "constexpr int kSmemCoef = %d;\n"
      "constexpr int kSmemStage = %d;\n"
      "constexpr int kSmemBars = %d;\n"
      "constexpr int kSmemBytes = %d;\n"
      "constexpr int kDsSlots = %d;   // dS tiles: 2 when one consumer may run a step ahead\n"
      "constexpr int kRowWarps = %d;  // preprocess / postprocess: one query row per warp\n"
      "constexpr int kDqReduce = %d;  // dQ/dR partials: 0 red.add, 1 bulk rows\n%s",
      v.schedule().block_m, g.warpgroups, g.producer ? "true" : "false", g.dsplit, g.ring, g.ds, g.coef, g.stage,
      g.bars, g.smem_bytes, g.ds_slots, prefill_bwd::kRowWarps, static_cast<int>(v.schedule().dq_reduce), regs);
}

std::string Family::Kernels(const Variant& v) const {
  namespace t = kernel_text;
  const Geometry g = GeometryOf(v.problem(), v.algorithm(), v.schedule());
  const int m = v.schedule().block_m, dw = v.problem().head_dim / g.dsplit;
  return absl::StrCat(t::prefill_bwd_sequence, t::prefill_bwd_rows, t::prefill_bwd_dq_reduce,
                      t::sm90_async, t::sm90_wgmma,
                      "\n// ---- generated wgmma wrappers: scores and dQ^T (N = kBlockM), dK and dV (N = kDw) ----\n",
                      sm90::WgmmaSs(m, "plx_bwd_wgmma_scores"), sm90::WgmmaRsMn(dw, "plx_bwd_wgmma_acc"),
                      sm90::WgmmaSsMajor(m, "plx_bwd_wgmma_dq", /*a_mn=*/true, /*b_mn=*/false),
                      t::prefill_bwd_sm90_kernel,
                      g.producer ? t::prefill_bwd_sm90_kernel_ws : t::prefill_bwd_sm90_kernel_sync);
}

}  // namespace parallax::prefill_bwd_sm90

namespace parallax::prefill_bwd_sm90 {
const KernelFamily& Instance() {
  static const Family kFamily;
  return kFamily;
}
}  // namespace parallax::prefill_bwd_sm90
