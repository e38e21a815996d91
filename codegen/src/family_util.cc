#include "family_util.h"

#include <charconv>

namespace parallax::family {

bool ParseTagged(absl::string_view tok, absl::string_view prefix, int* out) {
  if (tok.size() <= prefix.size() || tok.substr(0, prefix.size()) != prefix) return false;
  absl::string_view num = tok.substr(prefix.size());
  if (num.size() > 1 && num[0] == '0') return false;
  auto [ptr, ec] = std::from_chars(num.data(), num.data() + num.size(), *out);
  return ec == std::errc() && ptr == num.data() + num.size();
}

std::string PrintTiles(const Schedule& s) {
  return absl::StrCat("-m", s.block_m, "-n", s.block_n, "-w", s.warps, "-s", s.stages);
}

absl::Status ParseTiles(const std::vector<absl::string_view>& st, absl::string_view grammar, Schedule* s) {
  if (st.size() != 4) return absl::InvalidArgumentError(absl::StrCat("prefill schedule must be ", grammar));
  if (!ParseTagged(st[0], "m", &s->block_m)) return absl::InvalidArgumentError("expected mN (query rows per CTA)");
  if (!ParseTagged(st[1], "n", &s->block_n)) return absl::InvalidArgumentError("expected nN (keys per tile)");
  if (!ParseTagged(st[2], "w", &s->warps)) return absl::InvalidArgumentError("expected wN (warps)");
  if (!ParseTagged(st[3], "s", &s->stages)) return absl::InvalidArgumentError("expected sN (stages)");
  return absl::OkStatus();
}

int MmaRegisterEstimate(int mtiles, int head_dim, int keys) {
  const int o = mtiles * head_dim / 2;
  const int s = mtiles * keys / 2;
  const int a = (mtiles * head_dim / 4 <= 32) ? mtiles * head_dim / 4 : 0;
  return o + s + a;
}

int QrSmemBytes(const Problem& p, const Algorithm& a, const Schedule& s, int copies, int units) {
  const int d = p.head_dim;
  int bytes;
  if (s.path == MathPath::kMma) {
    bytes = copies * CeilDiv(units, UnitsPerMTile(a)) * 16 * d * 2;  // stacked [q; r] A tiles
  } else {
    const int rows = FmaRows(a, units);
    bytes = copies * rows * d * 4 + s.warps * rows * 32 * 4;  // fp32 rows, p1/p2 per warp
  }
  return (bytes + 127) / 128 * 128;
}

}  // namespace parallax::family
