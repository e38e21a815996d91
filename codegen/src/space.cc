#include "parallax/codegen/space.h"

#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace parallax {
namespace {

constexpr int kKiB = 1024;

DeviceLimits Limits(int block_kib, int sm_kib, int threads, const char* arch) {
  DeviceLimits l;
  l.max_smem_per_block = block_kib * kKiB;
  l.smem_per_sm = sm_kib * kKiB;
  l.max_threads_per_sm = threads;
  l.regs_per_sm = 64 * kKiB;
  l.arch = arch;
  return l;
}

// Static __shared__ arrays of the main kernel, which count against the same budget as the
// dynamic smem: the decode kernels keep r.q per head (float s_rq[kUnits]), which ptxas pads
// to 128 bytes ahead of the 128-byte aligned dynamic buffer; prefill has none.
int StaticSmemBytes(const Variant& v) {
  return v.problem().mode == Mode::kDecode ? (4 * v.schedule().heads_per_cta + 127) / 128 * 128 : 0;
}

// The field Variant::Create's message starts with ("block_n=48: must be ...").
std::string FieldOf(absl::string_view message) {
  const size_t eq = message.find('=');
  return std::string(eq == absl::string_view::npos ? message : message.substr(0, eq));
}

bool IsScheduleField(const std::string& f) {
  for (const char* s : {"warps", "stages", "block_n", "block_m", "splits", "heads_per_cta"})
    if (f == s) return true;
  return false;
}

std::vector<int> Divisors(int n, int at_most) {
  std::vector<int> out;
  for (int d = 1; d <= std::min(n, at_most); ++d)
    if (n % d == 0) out.push_back(d);
  return out;
}

// Prefill query rows per CTA for `warps` warps on `path` (see EnumerateSpace).
std::vector<int> BlockMCandidates(MathPath path, int warps, int units_per_mtile) {
  constexpr int kMaxBlockM = 256;
  std::vector<int> out;
  if (path == MathPath::kMma) {
    for (int m = warps * units_per_mtile; m <= kMaxBlockM; m += warps * units_per_mtile) out.push_back(m);
  } else {
    for (int rows = 1; warps * rows <= kMaxBlockM; rows *= 2)
      if (warps * rows >= 8) out.push_back(warps * rows);
  }
  return out;
}

}  // namespace

DeviceLimits DeviceLimits::Sm80() { return Limits(163, 164, 2048, "sm_80"); }
DeviceLimits DeviceLimits::Sm86() { return Limits(99, 100, 1536, "sm_86"); }
DeviceLimits DeviceLimits::Sm89() { return Limits(99, 100, 1536, "sm_89"); }
DeviceLimits DeviceLimits::Sm90() { return Limits(227, 228, 2048, "sm_90"); }

absl::StatusOr<DeviceLimits> DeviceLimitsForArch(std::string_view arch) {
  if (arch == "sm_80") return DeviceLimits::Sm80();
  if (arch == "sm_86") return DeviceLimits::Sm86();
  if (arch == "sm_89") return DeviceLimits::Sm89();
  if (arch == "sm_90") return DeviceLimits::Sm90();
  if (arch == "sm_90a") {
    DeviceLimits l = DeviceLimits::Sm90();
    l.arch = "sm_90a";
    return l;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "arch=", absl::string_view(arch.data(), arch.size()),
      ": no device limits known; expected sm_80, sm_86, sm_89, sm_90 or sm_90a"));
}

int CtasPerSm(const Variant& v, const DeviceLimits& limits) {
  const int smem = v.smem_bytes() + StaticSmemBytes(v) + limits.reserved_smem_per_block;
  if (v.smem_bytes() + StaticSmemBytes(v) > limits.max_smem_per_block) return 0;
  return std::min(limits.smem_per_sm / smem, limits.max_threads_per_sm / v.threads());
}

std::string SpaceStats::ToString() const {
  std::string s = absl::StrCat(candidates, " candidates: ", invalid, " invalid");
  if (!invalid_by_field.empty()) {
    absl::StrAppend(&s, " (", absl::StrJoin(invalid_by_field, ", ", absl::PairFormatter(": ")), ")");
  }
  absl::StrAppend(&s, ", ", smem_over_block, " over the smem per block limit, ", no_cta_per_sm,
                  " without a resident CTA per SM, ", kept, " kept");
  return s;
}

absl::Status ValidateProblemOnly(const Problem& p, const Algorithm& a) {
  // Create checks the problem before the schedule, so a failure naming a problem field
  // means no schedule can help; any schedule will do to get that far.
  absl::StatusOr<Variant> v = Variant::Create(p, a, CanonicalSchedule(p, a, Schedule{}));
  if (v.ok() || IsScheduleField(FieldOf(v.status().message()))) return absl::OkStatus();
  return v.status();
}

std::vector<Variant> EnumerateSpace(const Problem& p, const Algorithm& a, const SpaceOptions& o,
                                    SpaceStats* stats) {
  SpaceStats local;
  SpaceStats& st = stats ? *stats : local;
  st = SpaceStats{};
  std::vector<Variant> out;
  const int units_per_mtile = a.probe == Probe::kLearned ? 8 : 16;
  const bool decode = p.mode == Mode::kDecode;

  auto consider = [&](const Schedule& s) {
    ++st.candidates;
    absl::StatusOr<Variant> v = Variant::Create(p, a, s);
    if (!v.ok()) {
      ++st.invalid;
      ++st.invalid_by_field[FieldOf(v.status().message())];
      return;
    }
    if (o.prune && v->smem_bytes() > o.limits.max_smem_per_block) {
      ++st.smem_over_block;
      return;
    }
    if (o.prune && CtasPerSm(*v, o.limits) < 1) {
      ++st.no_cta_per_sm;
      return;
    }
    ++st.kept;
    out.push_back(*std::move(v));
  };

  // A group of 0 (num_kv_heads invalid) still yields candidates so the stats say why.
  const std::vector<int> heads = decode ? Divisors(std::max(p.group_size(), 1), 16) : std::vector<int>{0};
  const std::vector<int> splits = decode ? o.splits : std::vector<int>{0};
  for (MathPath path : o.paths) {
    for (int warps : o.warps) {
      const std::vector<int> block_ms =
          decode ? std::vector<int>{0} : BlockMCandidates(path, warps, units_per_mtile);
      for (int block_m : block_ms) {
        for (int block_n : o.block_n) {
          for (int stages : o.stages) {
            for (int split : splits) {
              for (int g : heads) {
                Schedule s;
                s.path = path;
                s.block_n = block_n;
                s.warps = warps;
                s.stages = stages;
                s.splits = split;
                s.heads_per_cta = g;
                s.block_m = block_m;
                consider(s);
              }
            }
          }
        }
      }
    }
  }
  return out;
}

}  // namespace parallax
