#include "parallax/cache/device_key.h"

#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace parallax::cache {

std::string DeviceKey(absl::string_view fingerprint) {
  if (!absl::StrContains(fingerprint, '|')) return std::string(fingerprint);
  const std::vector<absl::string_view> fields = absl::StrSplit(fingerprint, '|');
  std::vector<std::string> out;
  out.reserve(fields.size());
  for (size_t i = 0; i < fields.size(); ++i) {
    absl::string_view f = fields[i];
    if (i > 0 && absl::StartsWith(f, "driver=")) continue;
    int64_t mib = 0;
    if (i > 0 && absl::StartsWith(f, "mem=") && absl::EndsWith(f, "MiB") &&
        absl::SimpleAtoi(f.substr(4, f.size() - 7), &mib) && mib >= 0 && mib < (int64_t{1} << 40)) {
      out.push_back(absl::StrCat("mem=", MemoryGiB(mib << 20), "GiB"));
      continue;
    }
    out.emplace_back(f);
  }
  return absl::StrJoin(out, "|");
}

}  // namespace parallax::cache
