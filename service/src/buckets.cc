#include "parallax/service/buckets.h"

#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "parallax/runtime/runtime.h"

namespace parallax::service {

absl::StatusOr<Variant> DefaultVariant(const Problem& p, const Algorithm& a) {
  const Schedule s = p.mode == Mode::kDecode ? DefaultDecodeSchedule(p, a) : DefaultPrefillSchedule(p, a);
  return Variant::Create(p, a, CanonicalSchedule(p, a, s));
}

absl::StatusOr<int> NvrtcVersionNumber(absl::string_view text) {
  std::vector<absl::string_view> parts = absl::StrSplit(text, '.');
  int major = 0, minor = 0;
  if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &major) || !absl::SimpleAtoi(parts[1], &minor) ||
      major < 1 || major > 99 || minor < 0 || minor > 9)
    return absl::InvalidArgumentError(
        absl::StrCat("nvrtc_version='", text, "': must be \"major.minor\", e.g. \"13.0\""));
  return major * 1000 + minor * 10;
}

}  // namespace parallax::service
