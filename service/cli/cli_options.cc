#include "cli_options.h"

#include "absl/strings/str_cat.h"
#include "parallax/cache/paths.h"
#include "parallax/search/tune_args.h"

namespace parallax::cli {

CLI::Option* AddDurationOption(CLI::App& cmd, const std::string& name, double& seconds, const std::string& help) {
  CLI::Option* opt = cmd.add_option_function<std::string>(
      name,
      [&seconds, name](const std::string& text) {
        absl::StatusOr<double> s = search::ParseDuration(text);
        if (!s.ok()) throw CLI::ValidationError(name, std::string(s.status().message()));
        seconds = *s;
      },
      absl::StrCat(help, " (30s, 5m, 1h, 1h30m; a plain number is seconds)"));
  opt->type_name("DURATION");
  opt->default_str(search::FormatDuration(seconds));
  return opt;
}

std::string DbRuleHelp() {
  return absl::StrCat("default: $", cache::kDbEnvVar, " if set, else ", cache::DefaultDbPath(), "; \"",
                      cache::kNoDb, "\" for none");
}

CLI::Option* AddDbOption(CLI::App& cmd, std::string& db, const std::string& what) {
  return cmd.add_option("--db", db, absl::StrCat(what, " (", DbRuleHelp(), ")"))->type_name("PATH");
}

absl::StatusOr<std::string> RequiredDbPath(const std::string& flag, const std::string& command) {
  const std::string path = cache::ResolveDbPath(flag);
  if (path.empty())
    return absl::InvalidArgumentError(absl::StrCat(
        command, " needs a tuning database, but ", flag.empty() ? absl::StrCat("$", cache::kDbEnvVar) : "--db",
        " is \"", cache::kNoDb, "\"; give --db PATH"));
  return path;
}

}  // namespace parallax::cli
