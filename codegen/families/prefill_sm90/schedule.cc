// Hopper prefill schedules. Key grammar after the path: -mN-nN-wN-sN[-pp][-pers], like the portable
// prefill family: block_m query rows per CTA, block_n keys per K/V tile, warps (a producer
// warpgroup plus 1 or 2 consumer warpgroups), stages of the K/V ring; -pp when the two
// consumer warpgroups take turns issuing their MMAs (ping-pong); -pers when one CTA per SM
// walks the tiles (persistent).
#include <algorithm>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "family_util.h"
#include "parallax/codegen/space.h"
#include "prefill_sm90_family.h"

namespace parallax::prefill_sm90 {

using family::Bad;

namespace {
constexpr int kMaxSmem = 227 * 1024;  // sm_90's opt-in dynamic shared memory per block
int QueriesPerWg(const Algorithm& a) { return a.probe == Probe::kLearned ? 32 : 64; }
// Accumulator registers per consumer thread: S (block_n / 2), O (D / 2), P as 16-bit pairs.
int ConsumerRegisters(const Problem& p, const Schedule& s) { return s.block_n / 2 + p.head_dim / 2 + s.block_n / 4; }
}  // namespace

Geometry GeometryOf(const Problem& p, const Algorithm& a, const Schedule& s) {
  Geometry g;
  g.consumers = s.warps / 4 - 1;
  g.queries_per_wg = QueriesPerWg(a);
  g.qr_bytes = std::max(g.consumers, 0) * 64 * p.head_dim * 2;
  g.tile_bytes = s.block_n * p.head_dim * 2;
  g.ring_offset = g.qr_bytes;
  g.bars_offset = g.ring_offset + s.stages * 2 * g.tile_bytes;
  g.smem_bytes = 1024 + g.bars_offset + 8 * (3 + 4 * s.stages);  // barriers, then the work slot
  return g;
}

int KvBoxRows(const Problem& p, const Schedule& s) {
  return p.kv_layout == KvLayout::kPaged ? std::gcd(p.page_size, s.block_n) : s.block_n;
}

absl::Status Family::Validate(const Problem& p, const Algorithm& a, const Schedule& s) const {
  if (!Serves(p))
    return Bad("page_size", p.page_size,
               absl::StrFormat("the wgmma family loads pages of at least %d keys by TMA; smaller pages run on "
                               "path mma or fma", kMinPageSize));
  if (s.warps != 8 && s.warps != 12)
    return Bad("warps", s.warps, "must be 8 or 12 (a producer warpgroup and 1 or 2 consumer warpgroups)");
  const Geometry g = GeometryOf(p, a, s);
  if (s.block_m != g.consumers * g.queries_per_wg)
    return Bad("block_m", s.block_m,
               absl::StrFormat("must be %d: %d consumer warpgroups x %d queries (64 MMA rows each)", g.consumers *
                                   g.queries_per_wg, g.consumers, g.queries_per_wg));
  if (s.stages < 2)
    return Bad("stages", s.stages, "must be at least 2: tile t loads while tile t - 1 computes");
  if (s.pingpong && g.consumers != 2)
    return Bad("pingpong", "true", "needs two consumer warpgroups (warps=12)");
  if (s.pingpong && p.head_dim >= 256)
    return Bad("pingpong", "true", "not at head_dim 256: its 128 O registers per thread leave none for the turns");
  if (s.block_n % 16 != 0 || s.block_n > 256)
    return Bad("block_n", s.block_n, "must be a multiple of 16 up to 256 (the wgmma N of the scores)");
  if (ConsumerRegisters(p, s) > 192)
    return Bad("block_n", s.block_n,
               absl::StrFormat("with head_dim %d needs %d accumulator registers per consumer thread; at most 192 fit",
                               p.head_dim, ConsumerRegisters(p, s)));
  if (g.smem_bytes > kMaxSmem)
    return Bad("stages", s.stages,
               absl::StrFormat("needs %d bytes of shared memory; sm_90 allows %d per block", g.smem_bytes, kMaxSmem));
  return absl::OkStatus();
}

std::string Family::PrintSchedule(const Schedule& s) const {
  return absl::StrCat(family::PrintTiles(s), s.pingpong ? "-pp" : "", s.persistent ? "-pers" : "");
}

absl::Status Family::ParseSchedule(std::vector<absl::string_view> st, Schedule* s) const {
  if (st.size() > 4 && st.back() == "pers") {
    s->persistent = true;
    st.pop_back();
  }
  if (st.size() > 4 && st.back() == "pp") {
    s->pingpong = true;
    st.pop_back();
  }
  return family::ParseTiles(st, "wgmma-mN-nN-wN-sN[-pp][-pers]", s);
}

Schedule Family::Canonical(const Problem&, const Algorithm& a, Schedule s) const {
  if (s.block_m == 0) s.block_m = (s.warps / 4 - 1) * QueriesPerWg(a);
  return s;
}

// Measured on the H200 (bench/results/prefill-sm90-h200-2026-11-30.json, B 4 L 4096 and
// B 1 L 16384, 16 heads): two consumer warpgroups taking turns (ping-pong, 1-2% over
// without), the widest key tile the registers allow -- 160 keys at head_dim 128 with a
// learned probe (892 us vs 905 at 128), 128 for softmax (516 us; 64-key tiles 597), 192 at
// head_dim 64 (596 us vs 636) -- as deep as shared memory allows up to three stages. Head
// dim 256: 64-key tiles, two deep, no ping-pong (1742 vs 1752 us, and it spills there). With
// a sliding window 128-key tiles, 112 for softmax (wider ones spill a few bytes: kernel_check).
Schedule Family::Default(const Problem& p, const Algorithm& a) const {
  Schedule s;
  s.path = MathPath::kWgmma;
  s.warps = 12;
  s.block_m = 2 * QueriesPerWg(a);
  s.pingpong = p.head_dim < 256;
  // Persistent CTAs fetching tiles from a counter: softmax 4-8% faster (504 vs 528 us at B 4
  // L 4096, 554 vs 601 at B 8 L 2048, 382 vs 396 at head_dim 64); Parallax within 1% either
  // way and head_dim 256 4% slower, so those keep the plain launch.
  s.persistent = a.probe == Probe::kNone && p.head_dim < 256;
  if (p.head_dim >= 256) s.block_n = p.window && a.probe == Probe::kNone ? 48 : 64;  // 64 spills 4 bytes there
  else if (p.window) s.block_n = a.probe == Probe::kLearned ? 128 : 112;  // the mask spills wider ones
  else s.block_n = p.head_dim <= 64 ? 192 : a.probe == Probe::kLearned ? 160 : 128;
  for (s.stages = 3; s.stages > 2 && GeometryOf(p, a, s).smem_bytes > kMaxSmem; --s.stages) {
  }
  return s;
}

// Nested order: warps, block_n, stages, ping-pong, persistence; only when the options ask for
// the wgmma path.
void Family::ForEachCandidate(const Problem&, const Algorithm& a, const SpaceOptions& o,
                              const std::function<void(const Schedule&)>& consider) const {
  if (std::find(o.paths.begin(), o.paths.end(), MathPath::kWgmma) == o.paths.end()) return;
  for (int warps : {8, 12})
    for (int block_n : {64, 96, 128, 160, 192})
      for (int stages : o.stages)
        for (bool pingpong : {false, true})
          for (bool persistent : {false, true}) {
            Schedule s;
            s.path = MathPath::kWgmma;
            s.warps = warps;
            s.block_n = block_n;
            s.stages = stages;
            s.block_m = (warps / 4 - 1) * QueriesPerWg(a);
            s.pingpong = pingpong;
            s.persistent = persistent;
            consider(s);
          }
}

}  // namespace parallax::prefill_sm90
