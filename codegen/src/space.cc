#include "parallax/codegen/space.h"

#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "parallax/codegen/kernel_family.h"

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

// Static __shared__ arrays (the family's, as ptxas pads them) count against the same budget
// as the dynamic smem.
int CtasPerSm(const Variant& v, const DeviceLimits& limits) {
  const int static_smem = FamilyOf(v).StaticSmemBytes(v);
  const int smem = v.smem_bytes() + static_smem + limits.reserved_smem_per_block;
  if (v.smem_bytes() + static_smem > limits.max_smem_per_block) return 0;
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
  // A path of a family that serves the problem (multi-token decode: only decode_sm90's).
  Schedule s;
  if (const KernelFamily* f = ServingFamily(p, kAnySm)) s.path = f->paths().front();
  absl::StatusOr<Variant> v = Variant::Create(p, a, CanonicalSchedule(p, a, s));
  if (v.ok() || IsScheduleField(FieldOf(v.status().message()))) return absl::OkStatus();
  return v.status();
}

std::vector<Variant> EnumerateSpace(const Problem& p, const Algorithm& a, const SpaceOptions& o,
                                    SpaceStats* stats) {
  SpaceStats local;
  SpaceStats& st = stats ? *stats : local;
  st = SpaceStats{};
  std::vector<Variant> out;
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

  // Each family of the mode enumerates the requested paths it serves, in o.paths' order.
  for (const KernelFamily* f : AllFamilies()) {
    if (f->mode() != p.mode) continue;
    SpaceOptions mine = o;
    mine.paths.clear();
    for (MathPath path : o.paths)
      if (FindFamily(p.mode, path) == f) mine.paths.push_back(path);
    if (!mine.paths.empty()) f->ForEachCandidate(p, a, mine, consider);
  }
  return out;
}

}  // namespace parallax
