#include "representative.h"

#include <algorithm>
#include <optional>

#include "parallax/codegen/variant.h"

namespace parallax {
namespace {

struct Template {
  int block_n, warps, stages;
  int rows_per_warp;  // prefill: query rows per warp (0 for decode)
  int max_heads;      // decode: most heads per CTA to try (largest valid divisor <= this)
};

// Typical schedules per mode and path, tried in turn (from a rotating start) until one is
// valid for the problem.
std::vector<Template> Templates(Mode mode, MathPath path, Probe probe) {
  const int tile = probe == Probe::kLearned ? 8 : 16;  // MMA row tile in query units
  if (mode == Mode::kDecode) {
    if (path == MathPath::kMma) return {{64, 4, 2, 0, 8}, {128, 4, 3, 0, 16}, {64, 2, 2, 0, 4}, {128, 8, 2, 0, 8}};
    return {{128, 4, 2, 0, 2}, {64, 2, 3, 0, 4}, {256, 8, 2, 0, 1}, {32, 1, 2, 0, 2}};
  }
  if (path == MathPath::kMma) return {{64, 4, 2, tile, 0}, {32, 4, 3, tile, 0}, {64, 8, 2, tile, 0}, {32, 2, 2, tile, 0}};
  return {{64, 4, 2, 2, 0}, {32, 8, 3, 1, 0}, {64, 2, 2, 4, 0}, {128, 4, 1, 2, 0}};
}

std::optional<Variant> TryTemplate(const Problem& p, const Algorithm& a, MathPath path, const Template& t) {
  Schedule s;
  s.path = path;
  s.block_n = t.block_n;
  s.warps = t.warps;
  s.stages = t.stages;
  if (p.mode == Mode::kPrefill) {
    s.block_m = t.warps * t.rows_per_warp;
    absl::StatusOr<Variant> v = Variant::Create(p, a, s);
    if (v.ok()) return *v;
    return std::nullopt;
  }
  for (int g = std::min(t.max_heads, p.group_size()); g >= 1; --g) {
    if (p.group_size() % g != 0) continue;
    s.heads_per_cta = g;
    if (absl::StatusOr<Variant> v = Variant::Create(p, a, s); v.ok()) return *v;
  }
  return std::nullopt;
}

}  // namespace

std::vector<std::string> RepresentativeKeys() {
  struct Heads {
    int q, kv;
  };
  const Heads kHeads[] = {{16, 16}, {32, 8}, {64, 8}, {15, 5}, {40, 8}};  // groups 1, 4, 8, 3, 5
  const int kDims[] = {64, 128, 256};
  std::vector<std::string> keys;
  int combo = 0;
  for (Mode mode : {Mode::kDecode, Mode::kPrefill})
    for (MathPath path : {MathPath::kMma, MathPath::kFma})
      for (Probe probe : {Probe::kNone, Probe::kLearned})
        for (Affine affine : {Affine::kPlain, Affine::kAmplified})
          for (bool window : {false, true}) {
            for (int rep = 0; rep < 2; ++rep) {
              const int idx = combo * 2 + rep;
              Problem p;
              p.mode = mode;
              p.dtype = (combo + rep) % 2 ? DType::kFP16 : DType::kBF16;
              p.head_dim = kDims[idx % 3];
              p.num_q_heads = kHeads[idx % 5].q;
              p.num_kv_heads = kHeads[idx % 5].kv;
              const bool paged = mode == Mode::kDecode && rep == 1;
              p.kv_layout = paged ? KvLayout::kPaged : KvLayout::kContiguous;
              p.page_size = paged ? 16 : 0;
              p.window = window;
              const Algorithm a{probe, affine};
              const std::vector<Template> ts = Templates(mode, path, probe);
              std::optional<Variant> v;
              for (size_t t = 0; t < ts.size() && !v; ++t) v = TryTemplate(p, a, path, ts[(combo + t) % ts.size()]);
              if (v) keys.push_back(v->Key());  // CoversTheAxes counts them
            }
            ++combo;
          }
  return keys;
}


}  // namespace parallax
