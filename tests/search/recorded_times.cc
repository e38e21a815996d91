#include "recorded_times.h"

#include <algorithm>
#include <cmath>

#include "fake_gpu.h"
#include "parallax/codegen/kernel_family.h"
#include "parallax/search/cost_model.h"
#include "parallax/search/pruning.h"

namespace parallax::search::testing {
namespace {

uint64_t Fnv(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (char c : s) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
  return h;
}

// The simulated GPU (see the header): on the H100 3.0 TB/s achieved, occupancy limited by
// registers as well as shared memory, waves, latency hiding by stages x warps, merge costs.
double SimulatedUs(const SimGpu& gpu, const Variant& v, int batch, int seqlen) {
  const Problem& p = v.problem();
  const Schedule& s = v.schedule();
  const bool mma = s.path == MathPath::kMma;
  const int regs = std::min(255, 40 + (mma ? 24 : 48) * FamilyOf(v).Tiling(v).mtiles + 8 * s.stages + p.head_dim / 4);
  const int by_regs = 65536 / (((regs + 7) / 8 * 8) * v.threads());
  const int by_smem = (228 * 1024) / (v.smem_bytes() + 1024);
  const int per_sm = std::max(1, std::min({by_regs, by_smem, 2048 / v.threads(), 32}));
  const int ctas_base = static_cast<int>(FamilyOf(v).MainGrid(v, batch, 1, 1).ctas());
  const int slots = 132 * per_sm;
  const int auto_splits = std::clamp(std::min(std::max(1, slots / ctas_base), std::max(1, seqlen / (2 * s.block_n))), 1, 128);
  const int splits = s.splits > 0 ? s.splits : auto_splits;
  const double ctas = double(ctas_base) * splits;
  const double waves = std::ceil(ctas / slots);
  const double bytes = 2.0 * batch * seqlen * p.num_kv_heads * p.head_dim * 2;
  // Latency hiding: bytes in flight per SM from resident CTAs, each with stages x tiles.
  const double resident = std::min<double>(per_sm, std::ceil(ctas / 132));
  const double inflight = resident * s.stages * s.block_n * p.head_dim * 4 * (s.warps >= 2 ? 1.0 : 0.7);
  const double hide = std::min(1.0, inflight / gpu.inflight_bytes);
  const double active = std::min(1.0, ctas / 132);
  double us = bytes / (gpu.bytes_per_us * hide * active) * (waves * slots / std::max(ctas, double(slots)));
  // Math: thin MMA tiles waste lanes at small groups; the fma path is slower per flop.
  const double flops = 8.0 * batch * p.num_q_heads * seqlen * p.head_dim;
  us = std::max(us, flops / ((mma ? 1.5e8 : 3e7) * std::min(1.0, ctas * s.warps / 528.0)));
  if (s.stages == 1) us *= 1.18;  // load-then-compute leaves DRAM idle between tiles
  if (s.block_n >= 128 && s.warps == 1) us *= 1.25;
  us += 3.5;                       // launch
  if (splits > 1) us += (s.fused_merge ? 0.8 : 2.8) + 2.0 * splits * batch * p.num_q_heads * (2 * p.head_dim + 4) * 4 / 3.0e6;
  double u = double(Fnv(v.Key()) % 1000) / 999.0;
  if (gpu.salt != 0) u = 0.5 * u + 0.5 * double(Fnv(v.Key() + std::to_string(gpu.salt)) % 1000) / 999.0;
  const double unmodelled = 0.92 + 0.16 * u;
  return us * unmodelled;
}

RecordedCase MakeCase(const SimGpu& gpu, int hq, int hkv, int batch, int seqlen) {
  Problem p;
  p.num_q_heads = hq;
  p.num_kv_heads = hkv;
  Algorithm a;
  const DeviceInfo dev = gpu.salt == 0 ? parallax::testing::FakeH100() : parallax::testing::FakeH200();
  const CostInputs cost = CostInputsFor(dev);
  RecordedCase c;
  c.bucket = BucketFor(batch, seqlen);
  c.name = "h" + std::to_string(hq) + "x" + std::to_string(hkv) + "-" + ToString(c.bucket);
  c.best_us = 1e30;
  for (const Variant& v : BuildStaticSpace(p, a, LimitsFor(dev), TuneSpaceOptions{}).variants) {
    c.candidates.push_back({v, EstimateDecodeUs(v, batch, seqlen, cost)});
    const double t = SimulatedUs(gpu, v, batch, seqlen);
    c.us[v.Key()] = t;
    c.best_us = std::min(c.best_us, t);
  }
  return c;
}

}  // namespace

SimGpu SimH100() { return {"H100", 3.0e6, 40e3, 0}; }
SimGpu SimH200() { return {"H200", 4.2e6, 56e3, 200}; }

std::vector<RecordedCase> RecordedCases(const SimGpu& gpu) {
  return {MakeCase(gpu, 16, 8, 1, 65536), MakeCase(gpu, 16, 8, 8, 4096), MakeCase(gpu, 16, 8, 32, 16384),
          MakeCase(gpu, 16, 8, 128, 1024), MakeCase(gpu, 32, 8, 1, 16384), MakeCase(gpu, 32, 8, 128, 65536)};
}

Outcome TableMeasurer::Measure(const Variant& v, int reps) {
  ++calls_;
  distinct_.insert(v.Key());
  order_.push_back(v.Key());
  if (clock_) clock_->Advance(cost_s_);
  auto it = us_.find(v.Key());
  if (it == us_.end()) return Outcome::Bad(Verdict::kFailed, "not in the table");
  return Outcome::Ok(it->second, it->second, it->second, reps);
}

}  // namespace parallax::search::testing
