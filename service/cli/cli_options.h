// Options several subcommands share, so they read and behave alike: durations (budgets,
// limits) in one unit, and the tuning database under the one rule of cache/paths.h.
#pragma once

#include <string>

#include <CLI/CLI.hpp>

#include "absl/status/statusor.h"

namespace parallax::cli {

// A duration flag: "90" (a plain number is seconds), "30s", "5m", "1h", "1h30m"; "0" = none
// (search::ParseDuration). `seconds` holds the default and receives the value; --help shows
// the default as a duration ("30m").
CLI::Option* AddDurationOption(CLI::App& cmd, const std::string& name, double& seconds, const std::string& help);

// --db for a command that uses the tuning database. The help names the rule: the flag, else
// $PARALLAX_DB, else the XDG default (shown), "none" for none.
CLI::Option* AddDbOption(CLI::App& cmd, std::string& db, const std::string& what);

// The database a command must have (tune, serve, db ...): cache::ResolveDbPath, with "none"
// an error naming where it came from.
absl::StatusOr<std::string> RequiredDbPath(const std::string& flag, const std::string& command);

// Help text and error wording.
std::string DbRuleHelp();

}  // namespace parallax::cli
