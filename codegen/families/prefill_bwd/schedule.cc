// Backward schedules: query rows per step (block_m), keys per CTA (block_n), warps, and steps
// in flight (stages: 1 loads a step's rows then computes, 2 loads the next step's under this
// one). Key grammar after the path: -mN-nN-wN-sN (the prefill families' tiles).
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "family_util.h"
#include "parallax/codegen/space.h"
#include "prefill_bwd_family.h"

namespace parallax::prefill_bwd {

using family::Bad;

namespace {
// Above this the accumulators and score tiles leave ptxas too few registers for the
// fragments (255 per thread at most).
constexpr int kMaxRegisterEstimate = 176;
constexpr int kMaxSmem = 227 * 1024;
}  // namespace

absl::Status Family::Validate(const Problem& p, const Algorithm& a, const Schedule& s) const {
  if (p.kv_layout != KvLayout::kContiguous)
    return Bad("kv_layout", "paged", "the backward reads contiguous K/V only (paged KV has no backward)");
  if (s.path != MathPath::kMma) return Bad("path", ToString(s.path), "the backward runs on mma only");
  if (s.stages != 1 && s.stages != 2)
    return Bad("stages", s.stages, "must be 1 or 2 (query blocks in flight: load then compute, or double-buffered)");
  if (s.warps < 2) return Bad("warps", s.warps, "must be 2, 4 or 8 for the backward");
  const Geometry g = GeometryOf(p, a, s);
  if (s.block_n != 16 * s.warps / g.dsplit)
    return Bad("block_n", s.block_n,
               absl::StrFormat("must be %d: 16 keys per warp, %d warp(s) per 16 keys at head_dim %d",
                               16 * s.warps / g.dsplit, g.dsplit, p.head_dim));
  if (s.block_m != 16 && s.block_m != 32 && s.block_m != 64)
    return Bad("block_m", s.block_m, "must be 16, 32 or 64 (query rows per step)");
  if (RegisterEstimate(p, a, s) > kMaxRegisterEstimate)
    return Bad("block_m", s.block_m,
               absl::StrFormat("with head_dim %d the score tiles and dK/dV accumulators need too many registers "
                               "(estimate %d > %d); use a smaller block_m",
                               p.head_dim, RegisterEstimate(p, a, s), kMaxRegisterEstimate));
  if (g.smem_bytes > kMaxSmem)
    return Bad("block_m", s.block_m,
               absl::StrFormat("needs %d bytes of shared memory (at most %d)", g.smem_bytes, kMaxSmem));
  return absl::OkStatus();
}

namespace {
constexpr std::pair<const char*, Schedule::DqReduce> kReduceTokens[] = {{"bulk", Schedule::DqReduce::kBulk},
                                                                        {"det", Schedule::DqReduce::kDeterministic}};
}  // namespace

std::string Family::PrintSchedule(const Schedule& s) const {
  std::string key = family::PrintTiles(s);
  for (const auto& [token, value] : kReduceTokens)
    if (s.dq_reduce == value) absl::StrAppend(&key, "-", token);
  return key;
}

// path-mN-nN-wN-sN, then "bulk" or "det" when the dQ reduction is not atomic (no token).
absl::Status Family::ParseSchedule(std::vector<absl::string_view> st, Schedule* s) const {
  constexpr absl::string_view kGrammar = "path-mN-nN-wN-sN[-bulk|-det]";
  if (st.size() == 5) {
    bool known = false;
    for (const auto& [token, value] : kReduceTokens)
      if (st[4] == token) {
        s->dq_reduce = value;
        known = true;
      }
    if (!known)
      return absl::InvalidArgumentError(absl::StrCat("expected bulk or det (the dQ reduction) after sN, got '",
                                                     st[4], "'; backward schedule must be ", kGrammar));
    st.pop_back();
  }
  return family::ParseTiles(st, kGrammar, s);
}

Schedule Family::Canonical(const Problem& p, const Algorithm&, Schedule s) const {
  if (s.block_m == 0) s.block_m = p.head_dim <= 64 ? 64 : 32;
  return s;
}

// Tiles chosen from the register budget: 16 keys per warp (two warps per 16 keys at head_dim
// 256, each with half of dK and dV), 64 keys per CTA, the largest block_m that fits. The dQ
// reduction is measured: bulk beat atomic 1.68x at head_dim 128 and 1.49x at 64 on the H200
// (docs/backward.md, "the dQ reduction"); below sm_90 bulk compiles to atomic's red.add
// (dq_reduce.cuh), so it is the default on every arch. (Keys still spell atomic as no token.)
Schedule Family::Default(const Problem& p, const Algorithm&) const {
  Schedule s;
  s.path = MathPath::kMma;
  s.warps = p.head_dim >= 256 ? 8 : 4;
  s.block_n = 64;
  s.stages = 1;
  s.block_m = p.head_dim <= 64 ? 64 : 32;
  s.dq_reduce = Schedule::DqReduce::kBulk;
  return s;
}

// Nested order: warps, block_m, stages, dQ reduction (atomic, bulk: the deterministic one is
// asked for, not searched); block_n follows from warps and the head dim.
void Family::ForEachCandidate(const Problem& p, const Algorithm& a, const SpaceOptions& o,
                              const std::function<void(const Schedule&)>& consider) const {
  for (MathPath path : o.paths)
    for (int warps : o.warps)
      for (int block_m : {16, 32, 64})
        for (int stages : o.stages)
          for (Schedule::DqReduce reduce : {Schedule::DqReduce::kAtomic, Schedule::DqReduce::kBulk}) {
            Schedule s;
            s.path = path;
            s.warps = warps;
            s.stages = stages;
            s.block_m = block_m;
            s.dq_reduce = reduce;
            s.block_n = 16 * warps / GeometryOf(p, a, s).dsplit;
            consider(s);
          }
}

}  // namespace parallax::prefill_bwd
