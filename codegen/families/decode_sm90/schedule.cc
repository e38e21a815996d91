// Hopper decode schedules. Key grammar after the path: -nN-wN-sN-split{N|auto}-gN[-cluster],
// the decode family's tokens: keys per tile, warps, ring stages, split count, GQA heads per
// CTA; "-cluster" when the splits merge inside a thread-block cluster (Schedule::fused_merge:
// one launch) instead of in plx_decode_merge.
#include <algorithm>
#include <numeric>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "decode_sm90_family.h"
#include "family_util.h"
#include "parallax/codegen/space.h"

namespace parallax::decode_sm90 {

using family::Bad;
using family::ParseTagged;

namespace {
constexpr int kMaxSmem = 227 * 1024;  // sm_90's opt-in dynamic shared memory per block
}  // namespace

unsigned Family::fields() const { return kFieldSplits | kFieldHeadsPerCta | kFieldFusedMerge; }

Geometry GeometryOf(const Problem& p, const Algorithm& a, const Schedule& s) {
  Geometry g;
  g.units = s.heads_per_cta * p.queries;  // every query token of each head
  g.mtiles = family::CeilDiv(std::max(g.units, 1), family::UnitsPerMTile(a));
  g.keys_per_warp = s.warps > 0 ? s.block_n / s.warps : 0;
  g.ctas_per_group = s.heads_per_cta > 0 ? p.group_size() / s.heads_per_cta : 0;
  g.tile_bytes = s.block_n * p.head_dim * 2;
  // The [q; r] rows share the tiles' swizzled layout (mma_core.cuh addresses both through
  // plx_swz), so they take a tile's space; tiles stay 1024-byte aligned after them.
  g.ring_offset = g.tile_bytes;
  // Cluster merge: rank j finalizes outputs [j, j + 1) x merge_share of the units x head_dim;
  // each message carries every unit's statistics and the receiver's share of O1 (and O2).
  const int cluster = s.fused_merge ? std::max(s.splits, 1) : 1;
  g.merge_share = (family::CeilDiv(g.units * p.head_dim, cluster) + 3) / 4 * 4;
  g.msg_floats = g.units * 4 + g.merge_share * (a.probe == Probe::kLearned ? 2 : 1);
  const int box = s.fused_merge ? cluster * g.msg_floats * 4 : 0;  // the outbox, or the inbox
  // After the main loop the (idle) ring holds the cross-warp merge -- O1, O2 and 4 statistics
  // per (warp, head) -- and then the outbox. The inbox has its own space: peers may send
  // while this CTA still streams.
  const int merge = s.warps * g.units * (2 * p.head_dim + 4) * 4;
  g.outbox_offset = g.ring_offset + merge;
  g.bars_offset = g.ring_offset + std::max(s.stages * 2 * g.tile_bytes, merge + box);
  g.pub_offset = g.bars_offset + (8 * (s.stages + 1) + 15) / 16 * 16;  // the ring's, then the inbox's
  const int rq = (g.units + 3) / 4 * 4 * 4;
  const int pub = box;  // the inbox
  g.smem_bytes = 1024 + g.pub_offset + rq + pub;
  return g;
}

namespace {
// Heads of a GQA group one CTA may carry: every one brings all its query tokens.
int MaxHeadsPerCta(const Problem& p) {
  return std::min(std::max(p.group_size(), 1), kMaxUnits / std::max(p.queries, 1));
}
}  // namespace

int KvBoxRows(const Problem& p, const Schedule& s) {
  return p.kv_layout == KvLayout::kPaged ? std::gcd(p.page_size, s.block_n) : s.block_n;
}

absl::Status Family::Validate(const Problem& p, const Algorithm& a, const Schedule& s) const {
  if (p.queries > MaxQueries(p.head_dim))
    return Bad("queries", p.queries,
               absl::StrFormat("at most %d query tokens at head_dim %d (every token of a head shares a CTA's "
                               "accumulator registers); run more as extend", MaxQueries(p.head_dim), p.head_dim));
  if (!Serves(p))
    return Bad("page_size", p.page_size,
               absl::StrFormat("the sm_90a decode family loads pages of at least %d keys by TMA; smaller pages "
                               "decode on path mma or fma", kMinPageSize));
  if (s.warps != 2 && s.warps != 4 && s.warps != 8) return Bad("warps", s.warps, "must be 2, 4 or 8");
  if (s.stages < 2)
    return Bad("stages", s.stages, "must be at least 2: tiles t + 1.. load while tile t computes");
  if (s.splits < 0 || s.splits > 256) return Bad("splits", s.splits, "must be in 0..256 (0 = auto)");
  const int g = p.group_size();
  if (s.heads_per_cta < 1 || s.heads_per_cta > 16 || g % s.heads_per_cta != 0)
    return Bad("heads_per_cta", s.heads_per_cta,
               absl::StrCat("must divide the GQA group size ", g, " and be at most 16"));
  if (s.heads_per_cta * p.queries > kMaxUnits)
    return Bad("heads_per_cta", s.heads_per_cta,
               absl::StrFormat("x %d query tokens makes %d rows of q per CTA; at most %d", p.queries,
                               s.heads_per_cta * p.queries, kMaxUnits));
  if (s.block_n % (16 * s.warps) != 0)
    return Bad("block_n", s.block_n,
               absl::StrFormat("must be a multiple of %d (16 keys per warp x %d warps)", 16 * s.warps, s.warps));
  const Geometry geo = GeometryOf(p, a, s);
  if (geo.mtiles * 16 > s.block_n)
    return Bad("block_n", s.block_n,
               absl::StrFormat("must be at least %d: the [q; r] rows take a tile's layout", geo.mtiles * 16));
  if (geo.mtiles * p.head_dim / 2 > 128 || family::MmaRegisterEstimate(geo.mtiles, p.head_dim, geo.keys_per_warp) > 200)
    return Bad("heads_per_cta", s.heads_per_cta,
               absl::StrFormat("%d MMA row tiles x head_dim %d x %d keys per warp need too many accumulator "
                               "registers; pack fewer heads per CTA or use more warps",
                               geo.mtiles, p.head_dim, geo.keys_per_warp));
  if (s.fused_merge && (s.splits < 2 || s.splits > kMaxClusterSplits))
    return Bad("splits", s.splits,
               absl::StrFormat("must be 2..%d with the cluster merge (every split of a head group in one cluster)",
                               kMaxClusterSplits));
  if (geo.smem_bytes > kMaxSmem)
    return Bad("stages", s.stages,
               absl::StrFormat("needs %d bytes of shared memory; sm_90 allows %d per block",
                               geo.smem_bytes, kMaxSmem));
  return absl::OkStatus();
}

std::string Family::PrintSchedule(const Schedule& s) const {
  return absl::StrCat("-n", s.block_n, "-w", s.warps, "-s", s.stages, "-split",
                      s.splits == 0 ? std::string("auto") : std::to_string(s.splits), "-g", s.heads_per_cta,
                      s.fused_merge ? "-cluster" : "");
}

absl::Status Family::ParseSchedule(std::vector<absl::string_view> st, Schedule* s) const {
  if (st.size() == 6 && st[5] == "cluster") {
    s->fused_merge = true;
    st.pop_back();
  }
  if (st.size() != 5)
    return absl::InvalidArgumentError("sm_90a decode schedule must be wgmma-nN-wN-sN-splitN-gN[-cluster]");
  if (!ParseTagged(st[0], "n", &s->block_n)) return absl::InvalidArgumentError("expected nN (keys per tile)");
  if (!ParseTagged(st[1], "w", &s->warps)) return absl::InvalidArgumentError("expected wN (warps)");
  if (!ParseTagged(st[2], "s", &s->stages)) return absl::InvalidArgumentError("expected sN (stages)");
  if (st[3] == "splitauto") {
    s->splits = 0;
  } else if (!ParseTagged(st[3], "split", &s->splits)) {
    return absl::InvalidArgumentError("expected splitN or splitauto");
  }
  if (!ParseTagged(st[4], "g", &s->heads_per_cta)) return absl::InvalidArgumentError("expected gN (heads per CTA)");
  return absl::OkStatus();
}

Schedule Family::Canonical(const Problem& p, const Algorithm&, Schedule s) const {
  if (s.heads_per_cta == 0) s.heads_per_cta = std::max(MaxHeadsPerCta(p), 1);
  while (s.heads_per_cta > 1 && p.group_size() % s.heads_per_cta != 0) --s.heads_per_cta;
  return s;
}

// Not measured yet (docs/decode-performance.md, "sm_90a decode (first step)"): 4 warps of 16
// keys, as deep a ring as shared memory allows (4 stages: 3 tiles, 96 KiB at head_dim 128, in
// flight per CTA), splits chosen at launch and merged by the second kernel, as many heads per
// CTA as stay valid so K/V is read once per group.
// Multi-token decode (queries > 1) carries up to 16 rows of q per warp, so its math dominates:
// 128-key tiles of 32 keys per warp, 3 stages, ran fastest of five schedules on the H200
// (geomean 0.96x the one-token default's time at Tq 2, 0.84x at Tq 16; docs/decode-performance.md
// "multi-token decode"); where they do not fit (head_dim 256), the one-token default.
Schedule Family::Default(const Problem& p, const Algorithm& a) const {
  Schedule s;
  s.path = MathPath::kWgmma;
  s.warps = 4;
  for (const auto& [block_n, stages] : p.queries > 1 ? std::vector<std::pair<int, int>>{{128, 3}, {64, 4}}
                                                     : std::vector<std::pair<int, int>>{{64, 4}}) {
    s.block_n = block_n;
    for (int h = MaxHeadsPerCta(p); h >= 1; --h) {
      if (p.group_size() % h != 0) continue;
      s.heads_per_cta = h;
      for (s.stages = stages; s.stages > 2 && GeometryOf(p, a, s).smem_bytes > kMaxSmem; --s.stages) {
      }
      if (Validate(p, a, s).ok()) return s;
    }
  }
  s.block_n = 64;
  s.heads_per_cta = 1;
  s.stages = 2;
  return s;
}

// Nested order: warps, block_n, stages, heads_per_cta, then the kernel merge's splits and the
// cluster merge's; only when the options ask for the wgmma path. The cluster merge needs a
// fixed split count: the options' fixed counts, or 2, 4, 8 and 16 when they only ask for
// "auto". Each candidate is canonicalized and considered once, however often the options
// repeat a value.
void Family::ForEachCandidate(const Problem& p, const Algorithm& a, const SpaceOptions& o,
                              const std::function<void(const Schedule&)>& consider) const {
  if (std::find(o.paths.begin(), o.paths.end(), MathPath::kWgmma) == o.paths.end()) return;
  std::vector<int> heads;
  const int group = std::max(p.group_size(), 1);
  for (int d = 1; d <= MaxHeadsPerCta(p); ++d)
    if (group % d == 0) heads.push_back(d);
  std::vector<int> cluster_splits;
  for (int n : o.splits)
    if (n >= 2 && n <= kMaxClusterSplits) cluster_splits.push_back(n);
  if (cluster_splits.empty()) cluster_splits = {2, 4, 8, 16};
  std::set<std::string> seen;
  auto once = [&](const Schedule& s) {
    const Schedule c = Canonical(p, a, s);
    if (seen.insert(PrintSchedule(c)).second) consider(c);
  };
  for (int warps : o.warps)
    for (int block_n : o.block_n)
      for (int stages : o.stages)
        for (int g : heads) {
          Schedule s;
          s.path = MathPath::kWgmma;
          s.block_n = block_n;
          s.warps = warps;
          s.stages = stages;
          s.heads_per_cta = g;
          for (int split : o.splits) {
            s.splits = split;
            once(s);
          }
          s.fused_merge = true;
          for (int split : cluster_splits) {
            s.splits = split;
            once(s);
          }
        }
}

}  // namespace parallax::decode_sm90
