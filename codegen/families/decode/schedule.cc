// Decode schedules: split count, GQA heads per CTA, fused merge and the test-only faults.
// Key grammar after the path: -nN-wN-sN-split{N|auto}-gN[-fused][-testfault|-testhang].
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "decode_family.h"
#include "family_util.h"
#include "parallax/codegen/space.h"

namespace parallax::decode {

using family::Bad;
using family::ParseTagged;

unsigned Family::fields() const {
  return kFieldSplits | kFieldHeadsPerCta | kFieldFusedMerge | kFieldTestFault;
}

absl::Status Family::Validate(const Problem& p, const Algorithm& a, const Schedule& s) const {
  const bool mma = s.path == MathPath::kMma;
  if (!Serves(p))
    return Bad("queries", p.queries,
               "the portable decode takes one query token per sequence; multi-token decode runs on decode_sm90 "
               "(path wgmma, sm_90) or as extend (plx_prefill)");
  if (s.splits < 0 || s.splits > 256) return Bad("splits", s.splits, "must be in 0..256 (0 = auto)");
  const int g = p.group_size();
  if (s.heads_per_cta < 1 || s.heads_per_cta > 16 || g % s.heads_per_cta != 0)
    return Bad("heads_per_cta", s.heads_per_cta,
               absl::StrCat("must divide the GQA group size ", g, " and be at most 16"));
  if (s.block_n % s.warps != 0)
    return Bad("block_n", s.block_n, absl::StrCat("must be a multiple of warps=", s.warps));
  const int kw = s.block_n / s.warps;
  const int quantum = mma ? 16 : 32;
  if (kw % quantum != 0)
    return Bad("block_n", s.block_n,
               absl::StrFormat("must be a multiple of %d (%d keys per warp x %d warps) for the %s path",
                               quantum * s.warps, quantum, s.warps, mma ? "mma" : "fma"));
  if (mma) {
    const int mtiles = family::CeilDiv(s.heads_per_cta, family::UnitsPerMTile(a));
    if (mtiles * p.head_dim / 2 > 128 || family::MmaRegisterEstimate(mtiles, p.head_dim, kw) > 200)
      return Bad("heads_per_cta", s.heads_per_cta,
                 absl::StrFormat("%d MMA row tiles x head_dim %d need too many accumulator registers; "
                                 "pack fewer heads per CTA", mtiles, p.head_dim));
  } else if (family::FmaRows(a, s.heads_per_cta) * p.head_dim / 32 > 128) {
    return Bad("heads_per_cta", s.heads_per_cta,
               "too many accumulator registers for the fma path; pack fewer heads per CTA");
  }
  return absl::OkStatus();
}

std::string Family::PrintSchedule(const Schedule& s) const {
  return absl::StrCat("-n", s.block_n, "-w", s.warps, "-s", s.stages, "-split",
                      s.splits == 0 ? std::string("auto") : std::to_string(s.splits), "-g", s.heads_per_cta,
                      s.fused_merge ? "-fused" : "",
                      s.test_fault == Schedule::TestFault::kIllegalAddress ? "-testfault"
                      : s.test_fault == Schedule::TestFault::kHang         ? "-testhang"
                                                                           : "");
}

absl::Status Family::ParseSchedule(std::vector<absl::string_view> st, Schedule* s) const {
  // May end in "-fused" (split merge done by the last CTA of each group), then in a test
  // suffix (Variant::Parse refuses those unless asked to accept them).
  if (!st.empty() && (st.back() == "testfault" || st.back() == "testhang")) {
    s->test_fault = st.back() == "testfault" ? Schedule::TestFault::kIllegalAddress : Schedule::TestFault::kHang;
    st.pop_back();
  }
  if (st.size() == 6 && st[5] == "fused") {
    s->fused_merge = true;
    st.pop_back();
  }
  if (st.size() != 5) return absl::InvalidArgumentError("decode schedule must be path-nN-wN-sN-splitN-gN[-fused]");
  if (!ParseTagged(st[0], "n", &s->block_n)) return absl::InvalidArgumentError("expected nN (keys per tile)");
  if (!ParseTagged(st[1], "w", &s->warps)) return absl::InvalidArgumentError("expected wN (warps)");
  if (!ParseTagged(st[2], "s", &s->stages)) return absl::InvalidArgumentError("expected sN (stages)");
  if (st[3] == "splitauto") {
    s->splits = 0;
  } else if (!ParseTagged(st[3], "split", &s->splits)) {  // "split0" parses, then "did you mean"
    return absl::InvalidArgumentError("expected splitN or splitauto");
  }
  if (!ParseTagged(st[4], "g", &s->heads_per_cta)) return absl::InvalidArgumentError("expected gN (heads per CTA)");
  return absl::OkStatus();
}

Schedule Family::Canonical(const Problem& p, const Algorithm&, Schedule s) const {
  if (s.heads_per_cta == 0) s.heads_per_cta = std::min(p.group_size(), 16);
  while (s.heads_per_cta > 1 && p.group_size() % s.heads_per_cta != 0) --s.heads_per_cta;
  return s;
}

// 16 keys per warp and 4 warps keep 64-key tiles several stages deep in flight (decode is
// bound by reading K/V); as many heads per CTA as stay valid, so K/V is read once per group.
Schedule Family::Default(const Problem& p, const Algorithm& a) const {
  Schedule s;
  s.path = MathPath::kMma;
  s.warps = 4;
  s.block_n = 64;
  s.stages = p.head_dim >= 256 ? 2 : 3;
  for (int h = std::min(p.group_size(), 16); h >= 1; --h) {
    if (p.group_size() % h != 0) continue;
    s.heads_per_cta = h;
    if (Variant::Create(p, a, s).ok()) return s;
  }
  s.heads_per_cta = 1;
  return s;
}

// Nested order: path, warps, block_n, stages, splits, heads_per_cta (divisors of the GQA
// group up to 16; a group of 0, from invalid heads, still yields candidates so the stats say why).
void Family::ForEachCandidate(const Problem& p, const Algorithm&, const SpaceOptions& o,
                              const std::function<void(const Schedule&)>& consider) const {
  std::vector<int> heads;
  const int group = std::max(p.group_size(), 1);
  for (int d = 1; d <= std::min(group, 16); ++d)
    if (group % d == 0) heads.push_back(d);
  for (MathPath path : o.paths)
    for (int warps : o.warps)
      for (int block_n : o.block_n)
        for (int stages : o.stages)
          for (int split : o.splits)
            for (int g : heads) {
              Schedule s;
              s.path = path;
              s.block_n = block_n;
              s.warps = warps;
              s.stages = stages;
              s.splits = split;
              s.heads_per_cta = g;
              consider(s);
            }
}

}  // namespace parallax::decode
