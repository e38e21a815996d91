#include "parallax/service/buckets.h"

#include "absl/strings/str_cat.h"
#include "parallax/codegen/kernel_family.h"
#include "parallax/codegen/space.h"
#include "parallax/runtime/runtime.h"

namespace parallax::service {
namespace {

// Whether DefaultFamily(mode, sm) has an answer: it aborts where no family of the mode runs
// (a client may describe an sm_75 GPU), so the service asks first.
bool SomeFamilyRunsOn(Mode mode, int sm) {
  for (const KernelFamily* f : AllFamilies())
    if (f->mode() == mode && f->RunsOn(sm)) return true;
  return false;
}

int UsableSm(Mode mode, int sm) { return sm != 0 && SomeFamilyRunsOn(mode, sm) ? sm : 0; }


}  // namespace

absl::StatusOr<Variant> DefaultVariant(const Problem& p, const Algorithm& a, int sm) {
  sm = UsableSm(p.mode, sm);
  // DefaultSchedule aborts too where no family of the mode serves the problem (paged K/V has
  // no backward), and a client chooses the problem.
  if (ServingFamily(p, sm) == nullptr) {  // the problem-only check names the field ("kv_layout=paged: ...")
    absl::Status why = ValidateProblemOnly(p, a);
    return why.ok() ? absl::InvalidArgumentError(absl::StrCat("no ", ToString(p.mode), " kernel family serves ",
                                                              ProblemKey(p, a)))
                    : why;
  }
  const Schedule s = DefaultSchedule(p, a, sm);
  return Variant::Create(p, a, CanonicalSchedule(p, a, s));
}

// On the GetBestConfig hot path, only for MATCH_DEFAULT answers. Not cached: where the
// device's default family is the portable one the key is already in the spec, and otherwise
// (sm_90 prefill) one Variant::Create and Key() cost about 0.5 us on this 2-core machine
// against a p50 of 0.5-0.8 ms per call under load (docs/tuning-and-service.md). A cache per
// (problem key, sm) would add a lock on the reactor threads and need a bound, since clients
// choose the problems, to save that half microsecond.
std::string DeviceDefaultKey(const ProblemSpec& spec, int sm) {
  const Mode mode = spec.problem.mode;
  sm = UsableSm(mode, sm);
  // Same family, same Default(p, a): the key ValidateProblem made with sm 0.
  if (sm == 0 || &DefaultFamily(mode, sm) == &DefaultFamily(mode, 0)) return spec.default_variant_key;
  absl::StatusOr<Variant> v = DefaultVariant(spec.problem, spec.algorithm, sm);
  return v.ok() ? v->Key() : spec.default_variant_key;
}

}  // namespace parallax::service
