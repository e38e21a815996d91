// The `parallax` subcommand registry: each subcommand lives in its own cmd_*.cc and
// registers itself, so adding one (bench, tune, db, serve, remote) touches only its own file
// and the source list in service/CMakeLists.txt.
//
//   namespace parallax::cli {
//   Action SetupBench(CLI::App& cmd) {          // add options to `cmd`, capture their state
//     auto opts = std::make_shared<BenchOptions>();
//     cmd.add_option("key", opts->key, "...")->required();
//     return [opts] { return RunBench(*opts); };  // runs only when `bench` was chosen
//   }
//   PLX_REGISTER_COMMAND(bench, 40, "time a variant on this machine's GPU", SetupBench);
//   }
//
// The cmd_*.cc files must be compiled into the executable itself: from a static library the
// linker would drop the unreferenced registration objects.
#pragma once

#include <functional>
#include <vector>

#include <CLI/CLI.hpp>

namespace parallax::cli {

// Exit codes every subcommand uses.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;  // the work failed (compile error, I/O error)
inline constexpr int kExitUsage = 2;    // bad arguments or input; one "parallax: ..." line

using Action = std::function<int()>;
using Setup = Action (*)(CLI::App& cmd);

struct CommandEntry {
  const char* name;
  int order;  // position in --help: gen 10, compile 20, space 30, bench 40, tune 50, warmup 55, fleet 58,
              // db 60, serve 70, remote 80
  const char* description;
  Setup setup;
};

// Called from PLX_REGISTER_COMMAND during static initialisation; returns true.
bool RegisterCommand(const CommandEntry& entry);
// Every registered command, by order then name.
std::vector<CommandEntry> RegisteredCommands();

}  // namespace parallax::cli

#define PLX_REGISTER_COMMAND(name, order, description, setup)                          \
  [[maybe_unused]] static const bool plx_registered_command_##name =                   \
      ::parallax::cli::RegisterCommand(::parallax::cli::CommandEntry{#name, order, description, setup})
