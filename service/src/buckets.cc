#include "parallax/service/buckets.h"

#include "parallax/runtime/runtime.h"

namespace parallax::service {

absl::StatusOr<Variant> DefaultVariant(const Problem& p, const Algorithm& a) {
  const Schedule s = DefaultSchedule(p, a);
  return Variant::Create(p, a, CanonicalSchedule(p, a, s));
}

}  // namespace parallax::service
