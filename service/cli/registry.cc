#include "registry.h"

#include <algorithm>
#include <string>

namespace parallax::cli {
namespace {

// A function-local static: registrations run during static initialisation, in an order
// across translation units that C++ leaves unspecified.
std::vector<CommandEntry>& Registry() {
  static std::vector<CommandEntry> registry;
  return registry;
}

}  // namespace

bool RegisterCommand(const CommandEntry& entry) {
  Registry().push_back(entry);
  return true;
}

std::vector<CommandEntry> RegisteredCommands() {
  std::vector<CommandEntry> out = Registry();
  std::sort(out.begin(), out.end(), [](const CommandEntry& a, const CommandEntry& b) {
    return a.order != b.order ? a.order < b.order : std::string(a.name) < b.name;
  });
  return out;
}

}  // namespace parallax::cli
