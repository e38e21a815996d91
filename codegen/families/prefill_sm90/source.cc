// Hopper prefill: geometry, launch shape and generated source.
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "kernel_text.h"
#include "parallax/codegen/generator.h"
#include "prefill_sm90_family.h"
#include "sm90_wgmma.h"

namespace parallax::prefill_sm90 {

int Family::SmemBytes(const Variant& v) const {
  return GeometryOf(v.problem(), v.algorithm(), v.schedule()).smem_bytes;
}

LaunchShape Family::Launch(const Variant& v) const { return LaunchShape{v.threads(), SmemBytes(v), 0}; }

KernelFamily::TmaBoxes Family::Boxes(const Variant& v) const {
  // Parallax interleaves 8 q rows with the same queries' 8 r rows: one swizzle atom a box.
  return TmaBoxes{v.algorithm().probe == Probe::kLearned ? 8 : 64, KvBoxRows(v.problem(), v.schedule())};
}

// CTA (query tile, head, batch), like the portable family: tiles issued last-first.
Grid Family::MainGrid(const Variant& v, int batch, int seqlen_q, int) const {
  const int block_m = v.schedule().block_m;
  return Grid{(seqlen_q + block_m - 1) / block_m, v.problem().num_q_heads, batch};
}

std::vector<std::string> Family::KernelNames() const { return {parallax::KernelNames::kPrefill}; }

std::string Family::Summary(const Variant&) const {
  return "prefill on sm_90a (causal, mask aligned to the end of the keys; TMA, mbarriers, wgmma, "
         "a producer warpgroup and consumer warpgroups)";
}

WarpTiling Family::Tiling(const Variant& v) const {
  const Geometry g = GeometryOf(v.problem(), v.algorithm(), v.schedule());
  return WarpTiling{g.queries_per_wg / 4, "query rows per consumer warp", 1, g.ring_offset};
}

std::string Family::Constants(const Variant& v) const {
  const Geometry g = GeometryOf(v.problem(), v.algorithm(), v.schedule());
  // setmaxnreg: with two consumer warpgroups the producer gives registers up for the
  // consumers. The pool is what the CTA got at launch, 384 threads x 168 (ptxas's entry count
  // under __launch_bounds__(384, 1)), so producer + 2 x consumer <= 504 per thread triple, or
  // setmaxnreg.inc waits forever. Head dim 256 keeps 128 O registers per consumer thread and
  // takes 240 (producer 24); below that the producer's TMA loop spills at 24 with a window, so
  // it keeps 40 (consumers 232). kernel_check proves neither spills. With one consumer
  // warpgroup 256 threads fit 255 registers anyway.
  const bool realloc = g.consumers == 2;
  const int producer_regs = v.problem().head_dim >= 256 ? 24 : 40;
  const int consumer_regs = v.problem().head_dim >= 256 ? 240 : 232;
  return absl::StrFormat(
      "constexpr int kMTiles = 1;        // mma_core.cuh's view of a consumer warp: one 16-row tile\n"
      "constexpr int kBlockM = %d;       // query rows per CTA\n"
      "constexpr int kConsumers = %d;    // consumer warpgroups (warpgroup 0 produces)\n"
      "constexpr int kQueriesPerWg = %d; // 64 MMA rows: [q; r] per 8 queries, or 64 q rows\n"
      "constexpr int kDChunks = kHeadDim / 64;  // 128-byte swizzle atoms along the head dim\n"
      "constexpr int kTileBytes = %d;    // one K or V tile, kDChunks chunks of kBlockN x 128 bytes\n"
      "constexpr int kSmemQr = 0;        // offsets from the 1024-byte aligned base\n"
      "constexpr int kSmemRing = %d;\n"
      "constexpr int kSmemBars = %d;\n"
      "constexpr bool kRegRealloc = %s;\n"
      "constexpr bool kPingPong = %s;   // consumers take turns issuing MMAs (named barriers 1, 2)\n"
      "constexpr bool kPersistent = %s; // gridDim.x CTAs walk every (query tile, head, batch)\n"
      "constexpr int kProducerRegs = %d, kConsumerRegs = %d;\n"
      "constexpr int kPageBox = %d;      // keys per K/V TMA box (paged: gcd(page size, kBlockN))\n"
      "static_assert(!kRegRealloc || kProducerRegs + 2 * kConsumerRegs <= 3 * 168, \"setmaxnreg beyond the CTA's pool\");\n",
      v.schedule().block_m, g.consumers, g.queries_per_wg, g.tile_bytes, g.ring_offset, g.bars_offset,
      realloc ? "true" : "false", v.schedule().pingpong ? "true" : "false",
      v.schedule().persistent ? "true" : "false", producer_regs, consumer_regs, KvBoxRows(v.problem(), v.schedule()));
}

std::string Family::Kernels(const Variant& v) const {
  namespace t = kernel_text;
  const int n = v.schedule().block_n, d = v.problem().head_dim;
  const bool paged = v.problem().kv_layout == KvLayout::kPaged;
  return absl::StrCat(t::common_mma_sync,
                      paged ? absl::StrCat(t::common_kv_paged, t::prefill_kv_paged)
                            : absl::StrCat(t::common_kv_contiguous, t::prefill_kv_contiguous),
                      t::prefill_sequence, t::common_tile_loader,
                      t::common_finalize, t::common_mma_core, t::sm90_async, t::sm90_wgmma,
                      "\n// ---- generated wgmma wrappers: scores (N = kBlockN) and P V (N = kHeadDim) ----\n",
                      sm90::WgmmaSs(n, "plx_wgmma_scores"), sm90::WgmmaRsMn(d, "plx_wgmma_pv"),
                      t::prefill_sm90_kernel, paged ? t::prefill_sm90_kv_pages : t::prefill_sm90_kv_tma);
}

}  // namespace parallax::prefill_sm90

namespace parallax::prefill_sm90 {
const KernelFamily& Instance() {
  static const Family kFamily;
  return kFamily;
}
}  // namespace parallax::prefill_sm90
