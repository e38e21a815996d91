// Prefill schedules: query rows per CTA (block_m) on top of the shared fields.
// Key grammar after the path: -mN-nN-wN-sN.
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "family_util.h"
#include "parallax/codegen/space.h"
#include "prefill_family.h"

namespace parallax::prefill {

using family::Bad;

absl::Status Family::Validate(const Problem& p, const Algorithm& a, const Schedule& s) const {
  if (s.block_m < 8 || s.block_m > 256 || s.block_m % s.warps != 0)
    return Bad("block_m", s.block_m, absl::StrCat("must be in 8..256 and a multiple of warps=", s.warps));
  const int rows = s.block_m / s.warps;
  const int units_per_mtile = family::UnitsPerMTile(a);
  if (s.path == MathPath::kMma) {
    if (rows % units_per_mtile != 0)
      return Bad("block_m", s.block_m,
                 absl::StrFormat("must give each of %d warps a multiple of %d query rows for the mma path",
                                 s.warps, units_per_mtile));
    const int mtiles = rows / units_per_mtile;
    if (mtiles * p.head_dim / 2 > 128 || family::MmaRegisterEstimate(mtiles, p.head_dim, s.block_n) > 200)
      return Bad("block_m", s.block_m,
                 absl::StrFormat("%d MMA row tiles per warp with head_dim %d and block_n %d need too many "
                                 "registers", mtiles, p.head_dim, s.block_n));
  } else {
    if (s.block_n % 32 != 0) return Bad("block_n", s.block_n, "must be a multiple of 32 for the fma path");
    if (family::FmaRows(a, rows) * p.head_dim / 32 > 128)
      return Bad("block_m", s.block_m, "too many accumulator registers for the fma path; use fewer rows");
  }
  return absl::OkStatus();
}

std::string Family::PrintSchedule(const Schedule& s) const { return family::PrintTiles(s); }

absl::Status Family::ParseSchedule(std::vector<absl::string_view> st, Schedule* s) const {
  return family::ParseTiles(st, "path-mN-nN-wN-sN", s);
}

Schedule Family::Canonical(const Problem&, const Algorithm& a, Schedule s) const {
  if (s.block_m == 0) s.block_m = s.warps * family::UnitsPerMTile(a);
  return s;
}

// Measured on the H200 (B 4, L 4096, 32/8 heads; bench/results/prefill-defaults-h200-2026-11-30.json):
// two MMA row tiles per warp where the accumulators fit (head_dim 64, and 128 with a learned
// probe), 8 warps at head_dim 256 (one row tile each), 64-key tiles two stages deep.
Schedule Family::Default(const Problem& p, const Algorithm& a) const {
  Schedule s;
  s.path = MathPath::kMma;
  s.warps = p.head_dim >= 256 ? 8 : 4;
  s.stages = 2;
  s.block_n = 64;
  const bool two_tiles = p.head_dim <= 64 || (a.probe == Probe::kLearned && p.head_dim <= 128);
  s.block_m = s.warps * family::UnitsPerMTile(a) * (two_tiles ? 2 : 1);
  return s;
}

// Nested order: path, warps, block_m, block_n, stages. block_m = warps x rows per warp, up
// to 256; rows per warp are multiples of the MMA row tile for mma and powers of two for fma
// (its register tile has no other natural height).
void Family::ForEachCandidate(const Problem&, const Algorithm& a, const SpaceOptions& o,
                              const std::function<void(const Schedule&)>& consider) const {
  constexpr int kMaxBlockM = 256;
  const int tile = family::UnitsPerMTile(a);
  for (MathPath path : o.paths)
    for (int warps : o.warps) {
      std::vector<int> block_ms;
      if (path == MathPath::kMma) {
        for (int m = warps * tile; m <= kMaxBlockM; m += warps * tile) block_ms.push_back(m);
      } else {
        for (int rows = 1; warps * rows <= kMaxBlockM; rows *= 2)
          if (warps * rows >= 8) block_ms.push_back(warps * rows);
      }
      for (int block_m : block_ms)
        for (int block_n : o.block_n)
          for (int stages : o.stages) {
            Schedule s;
            s.path = path;
            s.block_n = block_n;
            s.warps = warps;
            s.stages = stages;
            s.block_m = block_m;
            consider(s);
          }
    }
}

}  // namespace parallax::prefill
