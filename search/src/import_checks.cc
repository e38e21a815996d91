#include "parallax/search/import_checks.h"

#include "parallax/codegen/variant.h"

namespace parallax::search {

cache::ImportOptions ImportChecks() {
  cache::ImportOptions o;
  // Served keys (best configs) must be production variants.
  o.check_variant_key = [](absl::string_view key) -> absl::Status {
    return Variant::Parse(std::string_view(key.data(), key.size())).status();
  };
  // The variants table is history: `parallax tune --test-faults` records its planted
  // variants there, and nothing serves or launches from it.
  o.check_recorded_variant_key = [](absl::string_view key) -> absl::Status {
    return Variant::Parse(std::string_view(key.data(), key.size()), {.allow_test_faults = true}).status();
  };
  o.check_problem_key = [](absl::string_view key) -> absl::Status {
    return ParseProblemKey(std::string_view(key.data(), key.size())).status();
  };
  return o;
}

}  // namespace parallax::search
