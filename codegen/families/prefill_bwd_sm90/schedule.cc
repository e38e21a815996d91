// Hopper backward schedules. The key grammar is prefill_bwd's (-mN-nN-wN-sN[-bulk]) after
// the path wgmma: block_m query rows per step (32 or 64: the N of the score wgmmas), block_n
// keys per CTA (64 per computing warpgroup), warps (4 or 8: one or two warpgroups that load
// and compute; 12: warp-specialized, a producer warpgroup streaming the query blocks to two
// consumer warpgroups, as prefill_sm90 counts its warps), stages (query blocks in flight: 1
// or 2; warp-specialized 2 or 3), bulk when the dQ/dR partials leave as bulk row reductions.
// At head_dim 256 two warpgroups share 64 keys (8 or 12 warps, block_n 64).
#include "absl/strings/str_format.h"
#include "family_util.h"
#include "parallax/codegen/space.h"
#include "prefill_bwd/prefill_bwd_family.h"
#include "prefill_bwd_sm90_family.h"

namespace parallax::prefill_bwd_sm90 {

using family::Bad;

namespace {
// dK, dV (D fp32 per thread) and the score tiles (block_m / 2 each) must leave ptxas room for
// addresses, coefficients and the packed A fragments under 255 registers (two warpgroups of
// 128 threads, one CTA per SM). Measured with ptxas (sm_90a): head_dim 128 Parallax block_m
// 32 (176) and softmax block_m 32 (160) compile without spills; softmax block_m 64 (192)
// spills 30-60 bytes.
constexpr int kMaxRegisterEstimate = 176;
constexpr int kMaxSmem = 227 * 1024;  // sm_90's opt-in dynamic shared memory per block
bool Learned(const Algorithm& a) { return a.probe == Probe::kLearned; }
}  // namespace

int RegisterEstimate(const Problem& p, const Algorithm& a, const Schedule& s) {
  const int dsplit = p.head_dim > 128 ? 2 : 1;
  return (Learned(a) ? 3 : 2) * s.block_m / 2 + p.head_dim / dsplit;
}

absl::Status Family::Validate(const Problem& p, const Algorithm& a, const Schedule& s) const {
  if (p.kv_layout != KvLayout::kContiguous)
    return Bad("kv_layout", "paged", "the backward reads contiguous K/V only (paged KV has no backward)");
  if (!Serves(p))
    return Bad("head_dim", p.head_dim, "the sm_90a backward serves head_dim 64, 128 and 256");
  const int dsplit = p.head_dim > 128 ? 2 : 1;
  if (s.warps != 4 * dsplit && s.warps != 8 && s.warps != 12)
    return Bad("warps", s.warps,
               dsplit == 1 ? "must be 4 or 8 (one or two warpgroups, 64 keys each), or 12 (a producer warpgroup "
                             "feeding two)"
                           : "must be 8 at head_dim above 128 (two warpgroups share 64 keys, each with half of dK, "
                             "dV), or 12 (a producer warpgroup feeding those two)");
  const Geometry g = GeometryOf(p, a, s);
  if (s.block_n != kKeysPerWarpgroup * g.warpgroups / dsplit)
    return Bad("block_n", s.block_n,
               absl::StrFormat("must be %d: 64 keys per %s at head_dim %d%s", kKeysPerWarpgroup * g.warpgroups / dsplit,
                               dsplit == 1 ? "warpgroup" : "two warpgroups", p.head_dim,
                               g.producer ? " (the producer warpgroup computes none)" : ""));
  if (s.block_m != 32 && s.block_m != 64)
    return Bad("block_m", s.block_m, "must be 32 or 64 (query rows per step: the N of the score wgmmas)");
  if (!g.producer && s.stages != 1 && s.stages != 2)
    return Bad("stages", s.stages, "must be 1 or 2 (query blocks in flight: load then compute, or double-buffered)");
  if (g.producer && s.stages != 2 && s.stages != 3)
    return Bad("stages", s.stages,
               "must be 2 or 3 with a producer warpgroup (the ring of query blocks it fills ahead of the consumers)");
  if (s.dq_reduce == Schedule::DqReduce::kDeterministic)
    return Bad("dq_reduce", "det", "the ordered (bit-reproducible) dQ reduction runs on path mma (prefill_bwd)");
  if (RegisterEstimate(p, a, s) > kMaxRegisterEstimate)
    return Bad("block_m", s.block_m,
               absl::StrFormat("with head_dim %d the score tiles and dK/dV accumulators need too many registers "
                               "(estimate %d > %d); use block_m 32",
                               p.head_dim, RegisterEstimate(p, a, s), kMaxRegisterEstimate));
  if (g.smem_bytes > kMaxSmem)
    return Bad(s.stages > 1 ? "stages" : "block_m", s.stages > 1 ? s.stages : s.block_m,
               absl::StrFormat("needs %d bytes of shared memory; sm_90 allows %d per block", g.smem_bytes, kMaxSmem));
  return absl::OkStatus();
}

// The grammar is prefill_bwd's; its parser and printer serve both families.
std::string Family::PrintSchedule(const Schedule& s) const { return prefill_bwd::Instance().PrintSchedule(s); }
absl::Status Family::ParseSchedule(std::vector<absl::string_view> tokens, Schedule* s) const {
  return prefill_bwd::Instance().ParseSchedule(std::move(tokens), s);
}

namespace {
// The widest block that compiles without spills: 64 queries at head_dim 64, 32 above (at
// head_dim 128 softmax block_m 64 spills; Parallax there is over the estimate).
int DefaultBlockM(const Problem& p, const Algorithm&) { return p.head_dim <= 64 ? 64 : 32; }
}  // namespace

Schedule Family::Canonical(const Problem& p, const Algorithm& a, Schedule s) const {
  if (s.block_m == 0) s.block_m = DefaultBlockM(p, a);
  return s;
}

// Measured on an H200 (bench/results/backward-sm90-default-h200-2026-12-01.json, backward alone,
// bf16 causal Parallax): warp-specialized (a producer and two consumer warpgroups, 128 keys;
// 64 at head_dim 256), two ring slots, dQ by red.add. Against the synchronous w8-s1 it took
// 4x16x4096 D128 from 5.82 to 5.48 ms, GQA 32/8 from 12.70 to 11.45, 1x16x16384 from 19.82
// to 18.92, D64 (64-query blocks) from 3.45 (bulk) to 2.73, and tied at D256 (16.77 / 16.85).
// A third slot gained < 1%; bulk rows lost 4-35% here.
Schedule Family::Default(const Problem& p, const Algorithm& a) const {
  Schedule s;
  s.path = MathPath::kWgmma;
  s.warps = 12;
  s.block_n = p.head_dim > 128 ? 64 : 128;
  s.stages = 2;
  s.block_m = DefaultBlockM(p, a);
  s.dq_reduce = Schedule::DqReduce::kAtomic;
  return s;
}

// Nested order: warps (two warpgroups, one, warp-specialized), block_m, stages (1, 2; warp-
// specialized 2, 3), dQ reduction (atomic, bulk).
void Family::ForEachCandidate(const Problem& p, const Algorithm&, const SpaceOptions& o,
                              const std::function<void(const Schedule&)>& consider) const {
  for (MathPath path : o.paths)
    for (int warps : {8, 4, 12})
      for (int block_m : {32, 64})
        for (int stages : {warps == 12 ? 2 : 1, warps == 12 ? 3 : 2})
          for (Schedule::DqReduce reduce : {Schedule::DqReduce::kAtomic, Schedule::DqReduce::kBulk}) {
            Schedule s;
            s.path = path;
            s.warps = warps;
            s.block_n = kKeysPerWarpgroup * (warps == 12 ? 2 : warps / 4) / (p.head_dim > 128 ? 2 : 1);
            s.block_m = block_m;
            s.stages = stages;
            s.dq_reduce = reduce;
            consider(s);
          }
}

}  // namespace parallax::prefill_bwd_sm90
