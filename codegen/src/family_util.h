// Small rules the kernel families share: error text, key tokens, the register and shared
// memory arithmetic of the common warp cores (kernels/common/mma_core.cuh, fma_core.cuh).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "parallax/codegen/variant.h"

namespace parallax::family {

// "field=value: rule", the shape of every validation message.
inline absl::Status Bad(absl::string_view field, absl::string_view value, absl::string_view rule) {
  return absl::InvalidArgumentError(absl::StrCat(field, "=", value, ": ", rule));
}
inline absl::Status Bad(absl::string_view field, int value, absl::string_view rule) {
  return Bad(field, std::to_string(value), rule);
}

inline bool IsPow2(int x) { return x > 0 && (x & (x - 1)) == 0; }
inline int CeilDiv(int a, int b) { return (a + b - 1) / b; }

// Parses "<prefix><int>" exactly (no sign, no leading zeros except "0").
bool ParseTagged(absl::string_view tok, absl::string_view prefix, int* out);

// The prefill families' schedule tokens "-mN-nN-wN-sN" (block_m, block_n, warps, stages):
// printed, and parsed from exactly four tokens; `grammar` names the whole form in the error.
std::string PrintTiles(const Schedule& s);
absl::Status ParseTiles(const std::vector<absl::string_view>& tokens, absl::string_view grammar, Schedule* s);

// Query units per m16 MMA tile: Parallax stacks 8 q rows over 8 r rows; softmax uses 16.
inline int UnitsPerMTile(const Algorithm& a) { return a.probe == Probe::kLearned ? 8 : 16; }
// q rows plus (Parallax) r rows of `units` query units: the fma core's kRows.
inline int FmaRows(const Algorithm& a, int units) { return units * (a.probe == Probe::kLearned ? 2 : 1); }

// Rough live-register estimate per thread for the mma core: O accumulators, score fragments
// and (when held) the q/r A fragments. Keeps the space away from spills.
int MmaRegisterEstimate(int mtiles, int head_dim, int keys);

// Shared memory ahead of the K/V ring: `copies` q/r operands of `units` query units (stacked
// 16-bit A tiles on the mma path, fp32 rows plus one p1/p2 scratch per warp on the fma path),
// rounded up to 128 bytes.
int QrSmemBytes(const Problem& p, const Algorithm& a, const Schedule& s, int copies, int units);

// The K/V ring: stages x (K, V) tiles of block_n 16-bit rows.
inline int KvRingBytes(const Problem& p, const Schedule& s) { return s.stages * 2 * s.block_n * p.head_dim * 2; }

}  // namespace parallax::family
