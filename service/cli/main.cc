// `parallax`: the command-line front end of the tuner. Subcommands register themselves
// (registry.h); this file only builds the app, parses and maps errors to exit codes.
#include <iostream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cli_io.h"
#include "parallax/codegen/kernel_abi.h"
#include "parallax/codegen/variant.h"
#include "parallax/runtime/nvrtc_compiler.h"
#include "registry.h"

#ifndef PLX_VERSION
#define PLX_VERSION "unknown"
#endif

namespace parallax::cli {
namespace {

std::string VersionString() {
  return absl::StrCat("parallax ", PLX_VERSION, " (generator v", kGeneratorVersion, ", kernel ABI v",
                      PLX_ABI_VERSION, ", NVRTC ", NvrtcVersion(), ")");
}

int Main(int argc, char** argv) {
  CLI::App app{"Parallax Tuner: generates, compiles and tunes Parallax attention kernels.",
               "parallax"};
  app.set_version_flag("--version", VersionString(), "Print the version and the generator version");
  app.require_subcommand(0, 1);
  std::vector<std::pair<CLI::App*, Action>> commands;
  std::vector<std::string> names;
  for (const CommandEntry& e : RegisteredCommands()) {
    CLI::App* cmd = app.add_subcommand(e.name, e.description);
    commands.emplace_back(cmd, e.setup(*cmd));
    names.push_back(e.name);
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {  // --help, --help-all, --version
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    return Fail(kExitUsage, e.what());
  }
  for (auto& [cmd, action] : commands)
    if (cmd->parsed()) return action();
  return Fail(kExitUsage, absl::StrCat("a subcommand is required: ", absl::StrJoin(names, ", "),
                                       " (see parallax --help)"));
}

}  // namespace
}  // namespace parallax::cli

int main(int argc, char** argv) { return parallax::cli::Main(argc, argv); }
