// The fleet's plan, from the tune command itself (`tune --dry-run --json --shard I/N`, run in
// this process, so that submit, the tasks and status cannot disagree on which buckets a shard
// has), and the manifest that keeps it: DIR/fleet.json.
#include <algorithm>
#include <filesystem>
#include <iostream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cmd_fleet.h"
#include "registry.h"

namespace parallax::cli::fleet {

namespace fs = std::filesystem;

absl::Status CheckTuneArgs(const std::vector<std::string>& args) {
  if (args.empty())
    return absl::InvalidArgumentError(
        "fleet submit needs the tune options after `--`, e.g. `-- --preset qwen3-0.6b` (see parallax tune --help)");
  for (const std::string& a : args) {
    for (const char* own : {"--shard", "--db", "--dry-run", "--json"})
      if (a == own || absl::StartsWith(a, absl::StrCat(own, "=")))
        return absl::InvalidArgumentError(absl::StrCat(
            "fleet submit sets ", own, " itself on every task; leave it out of the tune options after `--`",
            std::string(own) == "--db" ? " (the fleet's target database is fleet submit's own --db)" : ""));
    if (a == "--help" || a == "-h" || a == "--help-all")
      return absl::InvalidArgumentError("for the tune options see `parallax tune --help`");
  }
  return absl::OkStatus();
}

namespace {

// `tune ARGS --shard I/N --dry-run --json` in this process, its JSON captured: the options
// are parsed and checked by the tune command itself. Its own error message goes to stderr.
absl::StatusOr<nlohmann::json> TuneDryRun(const std::vector<std::string>& tune_args, int index, int count) {
  std::optional<CommandEntry> tune;
  for (const CommandEntry& e : RegisteredCommands())
    if (std::string(e.name) == "tune") tune = e;
  if (!tune) return absl::InternalError("this build has no tune command");
  CLI::App app{"", "parallax"};
  CLI::App* sub = app.add_subcommand("tune", tune->description);
  Action action = tune->setup(*sub);
  std::vector<std::string> args = {"tune"};
  args.insert(args.end(), tune_args.begin(), tune_args.end());
  for (const std::string& a : {std::string("--shard"), absl::StrCat(index, "/", count), std::string("--dry-run"),
                               std::string("--json")})
    args.push_back(a);
  std::reverse(args.begin(), args.end());  // CLI11 takes the arguments last first
  try {
    app.parse(args);
  } catch (const CLI::ParseError& e) {
    return absl::InvalidArgumentError(absl::StrCat("tune options: ", e.what()));
  }
  std::ostringstream captured;
  std::streambuf* old = std::cout.rdbuf(captured.rdbuf());
  int rc;
  try {
    rc = action();
  } catch (...) {
    std::cout.rdbuf(old);
    throw;
  }
  std::cout.rdbuf(old);
  if (rc != kExitOk)
    return absl::InvalidArgumentError(absl::StrCat("the tune options were refused (parallax tune ",
                                                   absl::StrJoin(tune_args, " "), ")"));
  nlohmann::json j = nlohmann::json::parse(captured.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return absl::InternalError("tune --dry-run --json printed no JSON");
  return j;
}

}  // namespace

absl::StatusOr<FleetPlan> PlanFleet(const std::vector<std::string>& tune_args, int count) {
  FleetPlan plan;
  for (int i = 1; i <= count; ++i) {
    absl::StatusOr<nlohmann::json> j = TuneDryRun(tune_args, i, count);
    if (!j.ok()) return j.status();
    ShardPlanEntry e;
    e.index = i;
    try {
      plan.problem = j->at("problem").get<std::string>();
      plan.units_total = j->at("units_total").get<int>();
      plan.expected_total_s = j->at("expected_total_s").get<double>();
      e.expected_s = j->at("expected_s").get<double>();
      for (const nlohmann::json& u : j->at("units")) e.buckets.push_back(u.at("bucket").get<std::string>());
    } catch (const nlohmann::json::exception& ex) {
      return absl::InternalError(absl::StrCat("tune --dry-run --json: unexpected output (", ex.what(), ")"));
    }
    plan.shards.push_back(std::move(e));
  }
  return plan;
}

nlohmann::json PlanJson(const FleetPlan& plan) {
  nlohmann::json shards = nlohmann::json::array();
  for (const ShardPlanEntry& e : plan.shards)
    shards.push_back({{"shard", e.index}, {"buckets", e.buckets}, {"expected_s", e.expected_s}});
  return shards;
}

absl::StatusOr<std::optional<Manifest>> LoadManifest(const std::string& dir) {
  const std::string path = absl::StrCat(dir, "/", kManifestName);
  std::error_code ec;
  if (!fs::exists(path, ec)) return std::optional<Manifest>();
  absl::StatusOr<std::string> text = ReadFile(path);
  if (!text.ok()) return text.status();
  nlohmann::json j = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object() || j.value("version", 0) != kManifestVersion || !j.contains("shards") ||
      !j["shards"].is_number_integer() || !j.contains("tune_args") || !j["tune_args"].is_array() ||
      !j.contains("plan") || !j["plan"].is_array())
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": not a fleet manifest this parallax writes (version ", kManifestVersion, ")"));
  return std::optional<Manifest>(Manifest{std::move(j)});
}

}  // namespace parallax::cli::fleet
