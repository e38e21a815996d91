#include "parallax/cache/paths.h"

#include <cstdlib>

#include "absl/strings/str_cat.h"

namespace parallax::cache {
namespace {

const char* EnvDb() {
  const char* e = std::getenv(kDbEnvVar);
  return e != nullptr && *e != '\0' ? e : nullptr;
}

}  // namespace

std::string DefaultDbPath() {
  if (const char* x = std::getenv("XDG_DATA_HOME"); x != nullptr && x[0] == '/')
    return absl::StrCat(x, "/parallax/tuner.db");
  if (const char* h = std::getenv("HOME"); h != nullptr && *h != '\0')
    return absl::StrCat(h, "/.local/share/parallax/tuner.db");
  return "tuner.db";
}

std::string ResolveDbPath(absl::string_view requested) {
  std::string chosen;
  if (!requested.empty()) chosen = std::string(requested);
  else if (const char* e = EnvDb()) chosen = e;
  else chosen = DefaultDbPath();
  return chosen == kNoDb ? std::string() : chosen;
}

const char* DbPathSource(absl::string_view requested) {
  if (!requested.empty()) return "given";
  return EnvDb() != nullptr ? "$PARALLAX_DB" : "default";
}

}  // namespace parallax::cache
