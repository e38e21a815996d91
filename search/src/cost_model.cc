#include "parallax/search/cost_model.h"

#include <algorithm>
#include <cmath>

#include "parallax/codegen/kernel_family.h"
#include "parallax/search/bench.h"
#include "parallax/search/prefill_bench.h"
#include "parallax/search/pruning.h"

namespace parallax::search {
namespace {

constexpr double kLaunchUs = 4.0;          // one kernel launch inside a graph, with its tail
constexpr double kMergeLaunchUs = 3.0;     // the separate split-merge kernel
constexpr double kFusedMergeUs = 1.0;      // last-CTA merge: no launch, a little serial work
constexpr double kInflightPerSm = 24e3;    // bytes in flight per SM to cover DRAM latency
// Rates are FLOPs per microsecond (1e8 = 100 TFLOP/s) of the arithmetic counted below (8 D
// per (query head, key) for Parallax, 4 D for softmax), achieved, not peak.
constexpr double kMmaFlopsPerUs = 2e8;     // decode tiles are thin
constexpr double kFmaFlopsPerUs = 2.5e7;
// Prefill tiles are square enough for the tensor pipes. On the H200, in this count: the
// mma.sync family's default and tuned schedules reach about 260-290 TFLOP/s
// (docs/prefill-performance.md; 2073 us at B 4, 16 heads, L 4096, D 128, Parallax), the
// sm_90a wgmma family about 650-700 (892 us at that shape with its default,
// codegen/families/prefill_sm90/schedule.cc: 640 with the diagonal waste counted below).
// Ordering only, but across families too: the ratio decides which family a guided search
// measures first.
constexpr double kMmaPrefillFlopsPerUs = 2.8e8;
constexpr double kWgmmaPrefillFlopsPerUs = 6.5e8;
constexpr double kFmaPrefillFlopsPerUs = 3e7;
// The backward (prefill_bwd, mma.sync) is costed as 2.5x the forward's arithmetic in the count
// above: its products per tile pair are 8 against the forward's 4 for Parallax and 5 against
// 2 for softmax (docs/backward.md, "Cost and kernel shape"), and 2.5x (FlashAttention's
// convention) covers both with the exp recomputation thrown in. Its achieved rate in that
// count is lower than the forward's (dq/dr by float32 atomics, K/V blocks of 64 keys): the
// first kernel took about 12.3 ms of the 13.2 ms fwd+bwd at B 4, 16 heads, L 4096, D 128 on
// the H200 (docs/backward.md), i.e. 1.1e8. One family, one path, so the rate only sizes the
// watchdog and the shards; ordering among its schedules comes from the wave tail and warps.
constexpr double kBackwardFlopsFactor = 2.5;
constexpr double kMmaBackwardFlopsPerUs = 1.1e8;
constexpr int kBackwardLaunches = 3;  // preprocess, main, postprocess

// Every MathPath has its own case: a new path must choose its rates here, not fall into
// another's by default (-Wswitch flags the omission).
double DecodeFlopsPerUs(MathPath path) {
  switch (path) {
    case MathPath::kMma: return kMmaFlopsPerUs;
    case MathPath::kFma: return kFmaFlopsPerUs;
    // No decode family runs on wgmma; were there one, at least mma.sync's rate.
    case MathPath::kWgmma: return kMmaFlopsPerUs;
  }
  return kFmaFlopsPerUs;
}

double PrefillFlopsPerUs(MathPath path) {
  switch (path) {
    case MathPath::kMma: return kMmaPrefillFlopsPerUs;
    case MathPath::kFma: return kFmaPrefillFlopsPerUs;
    case MathPath::kWgmma: return kWgmmaPrefillFlopsPerUs;
  }
  return kFmaPrefillFlopsPerUs;
}

// Warps of a CTA that do the math: on wgmma the first warpgroup only loads (TMA producer).
int MathWarps(const Schedule& s) {
  switch (s.path) {
    case MathPath::kMma:
    case MathPath::kFma: return s.warps;
    case MathPath::kWgmma: return std::max(4, s.warps - 4);
  }
  return s.warps;
}

}  // namespace

CostInputs CostInputsFor(const DeviceInfo& dev) {
  CostInputs c;
  c.sm_count = std::max(1, dev.sm_count);
  c.limits = LimitsFor(dev);
  // DeviceInfo has no bus width, so typical HBM/GDDR bandwidths per generation; only the
  // ordering of candidates and the watchdog's slack depend on it.
  const int cc = dev.cc_major * 10 + dev.cc_minor;
  c.mem_gbps = cc >= 90 ? 3350 : cc == 80 ? 2000 : cc >= 86 ? 900 : 1000;
  return c;
}

double DecodeBytes(const Problem& p, const Algorithm& a, int batch, int seqlen) {
  const double kv = 2.0 * batch * seqlen * p.num_kv_heads * p.head_dim * 2;
  const double rows = (a.probe == Probe::kLearned ? 3.0 : 2.0) * batch * p.num_q_heads * p.head_dim * 2;
  return kv + rows;
}

int ModelSplits(const Variant& v, int batch, int seqlen, const CostInputs& c) {
  const int per_sm = std::max(1, CtasPerSm(v, c.limits));
  const int ctas = static_cast<int>(std::max(1LL, FamilyOf(v).MainGrid(v, batch, 1, 1).ctas()));
  const int slots = c.sm_count * per_sm;
  const int max_by_len = std::max(1, seqlen / (2 * v.schedule().block_n));
  return std::clamp(std::min(std::max(1, slots / ctas), max_by_len), 1, 128);
}

double EstimateDecodeUs(const Variant& v, int batch, int seqlen, const CostInputs& c) {
  const Problem& p = v.problem();
  const Schedule& s = v.schedule();
  const int splits = s.splits > 0 ? s.splits : ModelSplits(v, batch, seqlen, c);
  const double ctas = std::max(1.0, double(FamilyOf(v).MainGrid(v, batch, 1, splits).ctas()));
  const double per_sm = std::max(1, CtasPerSm(v, c.limits));
  const double slots = c.sm_count * per_sm;
  const double active = std::min(ctas, slots);

  // Memory: bandwidth reaches its peak only with enough tiles in flight across the GPU, and a
  // partial last wave costs as long as a full one.
  const double cta_inflight = double(s.stages) * s.block_n * p.head_dim * 2 * 2;
  const double bw_frac = std::min(1.0, active * cta_inflight / (kInflightPerSm * c.sm_count));
  const double tail = ctas > slots ? std::ceil(ctas / slots) * slots / ctas : 1.0;
  const double bytes = DecodeBytes(p, v.algorithm(), batch, seqlen);
  const double t_mem = bytes / (c.mem_gbps * 1e3 * bw_frac) * tail;

  // Math: 8 D flops per (query head, key) for Parallax, 4 D for softmax.
  const double flops = double(batch) * p.num_q_heads * seqlen * p.head_dim *
                       (v.algorithm().probe == Probe::kLearned ? 8 : 4);
  const double busy = std::min(1.0, active * MathWarps(s) / (4.0 * c.sm_count));
  const double rate = DecodeFlopsPerUs(s.path);
  const double t_math = flops / (rate * busy) * tail;

  double t = std::max(t_mem, t_math) + kLaunchUs;
  if (splits > 1) {  // partials written and read back once
    const double merge_bytes = 2.0 * splits * batch * p.num_q_heads * (2.0 * p.head_dim + 4) * 4;
    t += (s.fused_merge ? kFusedMergeUs : kMergeLaunchUs) + merge_bytes / (c.mem_gbps * 1e3);
  }
  return t;
}

double EstimatePrefillUs(const Variant& v, int batch, int q_len, int seqlen_k, const CostInputs& c) {
  const Problem& p = v.problem();
  const Schedule& s = v.schedule();
  const double ctas = std::max(1.0, double(FamilyOf(v).MainGrid(v, batch, q_len, 1).ctas()));
  const double slots = double(c.sm_count) * std::max(1, CtasPerSm(v, c.limits));
  const double active = std::min(ctas, slots);
  const double tail = ctas > slots ? std::ceil(ctas / slots) * slots / ctas : 1.0;
  // Whole tiles run on the diagonal: about half a key tile per query row is masked work.
  const double pairs = double(VisiblePairs(q_len, seqlen_k, BenchWindow(p, seqlen_k))) +
                       double(q_len) * std::min(s.block_n, seqlen_k) / 2.0;
  const double flops = double(batch) * p.num_q_heads * pairs * p.head_dim *
                       (v.algorithm().probe == Probe::kLearned ? 8 : 4);
  const double busy = std::min(1.0, active * MathWarps(s) / (4.0 * c.sm_count));
  const double rate = PrefillFlopsPerUs(s.path);
  const double t_math = flops / (rate * busy) * tail;
  // q, r, out once; K and V once per sequence (re-reads hit L2).
  const double rows = (v.algorithm().probe == Probe::kLearned ? 3.0 : 2.0) * batch * q_len * p.num_q_heads;
  const double bytes = (rows + 2.0 * batch * seqlen_k * p.num_kv_heads) * p.head_dim * 2;
  const double t_mem = bytes / (c.mem_gbps * 1e3);
  return std::max(t_math, t_mem) + kLaunchUs;
}

double EstimateBackwardUs(const Variant& v, int batch, int q_len, int seqlen_k, const CostInputs& c) {
  const Problem& p = v.problem();
  const Schedule& s = v.schedule();
  const bool learned = v.algorithm().probe == Probe::kLearned;
  // CTA per (key block, kv head, sequence), each walking the query rows that see its keys.
  const double ctas = std::max(1.0, double(FamilyOf(v).MainGrid(v, batch, seqlen_k, 1).ctas()));
  const double slots = double(c.sm_count) * std::max(1, CtasPerSm(v, c.limits));
  const double active = std::min(ctas, slots);
  const double tail = ctas > slots ? std::ceil(ctas / slots) * slots / ctas : 1.0;
  // Whole steps of block_m rows on the diagonal: about half a step per key is masked work.
  const double pairs = double(VisiblePairs(q_len, seqlen_k, BenchWindow(p, seqlen_k))) +
                       double(seqlen_k) * std::min(std::max(s.block_m, 1), q_len) / 2.0;
  const double flops = kBackwardFlopsFactor * double(batch) * p.num_q_heads * pairs * p.head_dim * (learned ? 8 : 4);
  const double busy = std::min(1.0, active * MathWarps(s) / (4.0 * c.sm_count));
  const double rate = s.path == MathPath::kMma ? kMmaBackwardFlopsPerUs : kFmaPrefillFlopsPerUs;
  const double t_math = flops / (rate * busy) * tail;
  // 16-bit rows of D values: q, out, dout read and dq written (with a probe r, vbar, dr too);
  // float32 dq (dr) accumulators written by the atomics and read back; K, V read, dK, dV written.
  const double q_rows = double(batch) * q_len * p.num_q_heads;
  const double bytes = ((learned ? 7.0 : 4.0) * q_rows * 2 + (learned ? 2.0 : 1.0) * 2.0 * q_rows * 4 +
                        4.0 * batch * seqlen_k * p.num_kv_heads * 2) * p.head_dim;
  const double t_mem = bytes / (c.mem_gbps * 1e3);
  return std::max(t_math, t_mem) + kBackwardLaunches * kLaunchUs;
}

double EstimateUs(const Variant& v, const ShapeBucket& b, const CostInputs& c) {
  const BucketShape s = ShapeOf(b);
  // The backward is tuned on prefill buckets (the shape of the forward it differentiates).
  if (v.problem().mode == Mode::kBackward) return EstimateBackwardUs(v, s.batch, s.q_len, s.seqlen, c);
  if (IsPrefillBucket(b)) return EstimatePrefillUs(v, s.batch, s.q_len, s.seqlen, c);
  return EstimateDecodeUs(v, s.batch, s.seqlen, c);
}

}  // namespace parallax::search
