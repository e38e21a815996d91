// The family registry, built from codegen/families/families.inc.
#include <cstdlib>
#include <cstdio>

#include "parallax/codegen/kernel_family.h"

namespace parallax {

#define PLX_FAMILY(ns) \
  namespace ns {       \
  const KernelFamily& Instance();  \
  }
#include "families.inc"
#undef PLX_FAMILY

const std::vector<const KernelFamily*>& AllFamilies() {
  static const std::vector<const KernelFamily*> kAll = {
#define PLX_FAMILY(ns) &ns::Instance(),
#include "families.inc"
#undef PLX_FAMILY
  };
  return kAll;
}

const KernelFamily* FindFamily(Mode mode, MathPath path) {
  for (const KernelFamily* f : AllFamilies())
    if (f->mode() == mode)
      for (MathPath p : f->paths())
        if (p == path) return f;
  return nullptr;
}

// Variant::Create refuses a (mode, path) no family serves, so a variant always has one.
const KernelFamily& FamilyOf(const Variant& v) {
  return *FindFamily(v.problem().mode, v.schedule().path);
}

namespace {
[[noreturn]] void NoFamily(Mode mode) {
  // Every Mode value has a family (tests/codegen/family_test.cc); reaching here is a build
  // that registered none for a new mode.
  std::fprintf(stderr, "parallax: no kernel family registered for mode %d\n", static_cast<int>(mode));
  std::abort();
}
}  // namespace

const KernelFamily& DefaultFamily(Mode mode, int sm) {
  for (const KernelFamily* f : AllFamilies())
    if (f->mode() == mode && f->RunsOn(sm)) return *f;
  NoFamily(mode);
}

const KernelFamily& DefaultFamily(const Problem& p, int sm) {
  for (const KernelFamily* f : AllFamilies())
    if (f->mode() == p.mode && f->RunsOn(sm) && f->Serves(p)) return *f;
  NoFamily(p.mode);
}

const KernelFamily* ServingFamily(const Problem& p, int sm) {
  for (const KernelFamily* f : AllFamilies())
    if (f->mode() == p.mode && (sm == kAnySm || f->RunsOn(sm)) && f->Serves(p)) return f;
  return nullptr;
}

Schedule DefaultSchedule(const Problem& p, const Algorithm& a, int sm) {
  return CanonicalSchedule(p, a, DefaultFamily(p, sm).Default(p, a));
}

std::optional<Variant> OneLaunchTwin(const Variant& v) {
  Schedule s = v.schedule();
  if (!(FamilyOf(v).fields() & kFieldFusedMerge) || s.fused_merge || s.splits == 1) return std::nullopt;
  s.fused_merge = true;
  absl::StatusOr<Variant> twin = Variant::Create(v.problem(), v.algorithm(), s);
  if (!twin.ok()) return std::nullopt;
  return *std::move(twin);
}

}  // namespace parallax
