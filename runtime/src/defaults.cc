// Built-in schedules used when neither the caller nor the tuning database names a variant.
// Chosen from the kernel structure, not measured: 16 keys per warp and 4 warps keep 64-key
// tiles several stages deep in flight (decode is bound by reading K/V).
#include <algorithm>

#include "parallax/runtime/runtime.h"

namespace parallax {

Schedule DefaultDecodeSchedule(const Problem& p, const Algorithm& a) {
  Schedule s;
  s.path = MathPath::kMma;
  s.warps = 4;
  s.block_n = 64;
  s.stages = p.head_dim >= 256 ? 2 : 3;
  s.splits = 0;
  s.block_m = 0;
  for (int h = std::min(p.group_size(), 16); h >= 1; --h) {
    if (p.group_size() % h != 0) continue;
    s.heads_per_cta = h;
    if (Variant::Create(p, a, s).ok()) return s;
  }
  s.heads_per_cta = 1;
  return s;
}

Schedule DefaultPrefillSchedule(const Problem& p, const Algorithm& a) {
  Schedule s;
  s.path = MathPath::kMma;
  s.warps = 4;
  s.stages = 2;
  s.block_n = p.head_dim >= 256 ? 32 : 64;
  const int units = a.probe == Probe::kLearned ? 8 : 16;
  s.block_m = s.warps * units * (p.head_dim <= 64 ? 2 : 1);
  return s;
}

}  // namespace parallax
