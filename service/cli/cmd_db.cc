// `parallax db show|export|import|verify`: look into, copy, merge and check a tuning database
// without a GPU. show, export and verify only read (the file is opened read-only and never
// migrated); import writes (and creates the database when missing).
#include <algorithm>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include <nlohmann/json.hpp>

#include "../include/parallax/service/json_read.h"  // header-only; also built without the service
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cli_io.h"
#include "cli_options.h"
#include "parallax/cache/json.h"
#include "parallax/cache/schema.h"
#include "parallax/cache/store.h"
#include "parallax/codegen/bucket.h"
#include "parallax/search/import_checks.h"
#include "parallax/search/tune_args.h"
#include "parallax/search/logging.h"
#include "parallax/search/tuner.h"
#include "registry.h"
#include "svg_plot.h"

namespace parallax::cli {
namespace {

constexpr int kShownRuns = 10;

struct DbCmdOptions {
  std::string db;
  bool json = false;
  std::string file;  // export / import
  std::string plot;  // show --plot FILE.svg
};

// An existing database, opened read-only: reading commands never create, migrate or write
// it (an empty file reads as empty, an older schema as it is).
absl::StatusOr<std::unique_ptr<cache::Store>> OpenForReading(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec))
    return absl::NotFoundError(absl::StrCat(path, ": no tuning database there (see --db; `parallax tune` writes one)"));
  cache::StoreOptions so;
  so.read_only = true;
  return cache::Store::Open(path, so);
}

int StoreError(const absl::Status& s) {
  return Fail(s.code() == absl::StatusCode::kNotFound || s.code() == absl::StatusCode::kInvalidArgument ||
                      s.code() == absl::StatusCode::kDataLoss || s.code() == absl::StatusCode::kAlreadyExists ||
                      s.code() == absl::StatusCode::kFailedPrecondition
                  ? kExitUsage
                  : kExitFailure,
              s.message());
}

// One line per run; a row whose params are not what a tuner writes is shown as unreadable
// rather than ending the command.
std::string RunLine(const cache::RunInfo& r) {
  const std::string head = absl::StrFormat("  #%d %-11s", r.id, cache::ToString(r.status));
  if (!r.params.is_object())
    return absl::StrCat(head, " (unreadable params_json: ", r.params.type_name(), ", not a JSON object)");
  std::string problem_key;
  if (service::ReadJson(r.params, "problem_key", &problem_key) == service::JsonField::kWrongType)
    return absl::StrCat(head, " (unreadable params_json: problem_key is not a string)");
  nlohmann::json strategy;
  const bool has_strategy = service::ReadJson(r.params, "strategy", &strategy) == service::JsonField::kOk;
  std::string shard;  // `tune --shard I/N` runs say which
  const bool has_shard = service::ReadJson(r.params, "shard", &shard) == service::JsonField::kOk;
  return absl::StrFormat("%s %s %s%s", head, problem_key, has_strategy ? service::SafeDump(strategy) : "",
                         has_shard ? absl::StrCat(" shard ", shard) : "");
}

// The default's time where the tuner measured it: the device's own default (what the runtime
// runs untuned there), else the portable one (the tuner's baseline when the own one is not
// in its space); the fastest ok measurement of it in that bucket.
class DefaultTimes {
 public:
  DefaultTimes(const std::vector<cache::Measurement>& ms, const std::vector<cache::DeviceInfo>& devices) {
    for (const cache::Measurement& m : ms) {
      if (m.status != cache::MeasurementStatus::kOk || !m.median_us) continue;
      double& t = best_[{m.device_fingerprint, m.bucket, m.variant_key}];
      t = t == 0 ? *m.median_us : std::min(t, *m.median_us);
    }
    for (const cache::DeviceInfo& d : devices) sm_[d.fingerprint] = d.cc_major * 10 + d.cc_minor;
  }
  std::optional<double> For(const cache::BestConfig& b) const {
    absl::StatusOr<Variant> v = Variant::Parse(b.variant_key);
    if (!v.ok()) return std::nullopt;
    const auto sm = sm_.find(b.device_fingerprint);
    for (int s : {sm == sm_.end() ? 0 : sm->second, 0}) {
      const std::string key = search::DefaultVariantKey(v->problem(), v->algorithm(), s);
      if (auto it = best_.find({b.device_fingerprint, b.bucket, key}); it != best_.end()) return it->second;
    }
    return std::nullopt;
  }

 private:
  std::map<std::tuple<std::string, std::string, std::string>, double> best_;
  std::map<std::string, int> sm_;
};

// Devices, then problems, then buckets by their numbers (b1-l1024 < b1-l4096 < b1-l16384).
void SortForListing(std::vector<cache::BestConfig>& best) {
  std::stable_sort(best.begin(), best.end(), [](const cache::BestConfig& a, const cache::BestConfig& b) {
    if (a.device_fingerprint != b.device_fingerprint) return a.device_fingerprint < b.device_fingerprint;
    if (a.problem_key != b.problem_key) return a.problem_key < b.problem_key;
    return BucketLess(a.bucket, b.bucket);
  });
}

std::string ScheduleOf(const cache::BestConfig& b) {
  return b.variant_key.substr(std::min(b.variant_key.size(), b.problem_key.size() + 1));
}

int WritePlot(const std::string& file, const std::string& db_path, const std::vector<cache::BestConfig>& best,
              const DefaultTimes& defaults) {
  std::vector<PlotPanel> panels;
  for (const cache::BestConfig& b : best) {
    if (panels.empty() || panels.back().title != b.problem_key || panels.back().subtitle != b.device_fingerprint)
      panels.push_back({b.problem_key, b.device_fingerprint, {}});
    panels.back().bars.push_back({b.bucket, b.median_us, defaults.For(b), ScheduleOf(b)});
  }
  if (panels.empty()) return Fail(kExitFailure, absl::StrCat("--plot: ", db_path, " has no tuned configs to plot"));
  const std::string svg =
      TunedVsDefaultSvg(panels, absl::StrCat("Tuned vs default time per bucket (", db_path, ")"));
  if (absl::Status s = WriteFile(file, svg); !s.ok()) return Fail(kExitFailure, s.message());
  std::cerr << absl::StrFormat("parallax: wrote %s (%d panel(s), %d bucket(s))\n", file, panels.size(), best.size());
  return kExitOk;
}

int RunShow(const DbCmdOptions& o) {
  absl::StatusOr<std::string> path = RequiredDbPath(o.db, "db show");
  if (!path.ok()) return Fail(kExitUsage, path.status().message());
  absl::StatusOr<std::unique_ptr<cache::Store>> store = OpenForReading(*path);
  if (!store.ok()) return StoreError(store.status());
  cache::Store& s = **store;
  absl::StatusOr<int> schema = s.SchemaVersion();
  absl::StatusOr<std::vector<cache::DeviceInfo>> devices = s.ListDevices();
  absl::StatusOr<std::vector<cache::BestConfig>> best = s.ListBestConfigs();
  cache::RunFilter rf;
  rf.limit = kShownRuns;
  absl::StatusOr<std::vector<cache::RunInfo>> runs = s.ListRuns(rf);
  absl::StatusOr<std::vector<cache::Measurement>> ms = s.ListMeasurements();
  for (const absl::Status& st : {schema.status(), devices.status(), best.status(), runs.status(), ms.status()})
    if (!st.ok()) return StoreError(st);
  SortForListing(*best);
  const DefaultTimes defaults(*ms, *devices);
  if (!o.plot.empty())
    if (int rc = WritePlot(o.plot, *path, *best, defaults); rc != kExitOk) return rc;
  std::map<std::string, int64_t> by_status = {{"ok", 0}, {"failed", 0}, {"wrong", 0}, {"timeout", 0}};
  for (const cache::Measurement& m : *ms) ++by_status[std::string(cache::ToString(m.status))];
  const int current = static_cast<int>(cache::BuiltinMigrations().size());

  if (o.json) {
    nlohmann::json counts = {{"total", ms->size()}};
    for (const auto& [k, n] : by_status) counts[k] = n;
    nlohmann::json configs = nlohmann::json::array();
    for (const cache::BestConfig& b : *best) {
      nlohmann::json j = b;
      if (std::optional<double> d = defaults.For(b)) j["default_us"] = *d;
      configs.push_back(std::move(j));
    }
    const nlohmann::json j = {{"path", *path},         {"schema_version", *schema}, {"devices", *devices},
                              {"best_configs", configs}, {"runs", *runs},            {"measurements", counts}};
    std::cout << service::SafeDump(j, 2) << "\n";  // a row's text that never parsed may not be UTF-8
    return kExitOk;
  }
  std::string schema_note;
  if (*schema == 0) schema_note = ", an empty file";
  else if (*schema < current)
    schema_note = absl::StrFormat(", older than this build's v%d: read as it is, not migrated", current);
  std::cout << absl::StrFormat("database %s (schema v%d%s)\n", *path, *schema, schema_note);
  std::cout << absl::StrFormat("devices (%d):\n", devices->size());
  for (const cache::DeviceInfo& d : *devices) std::cout << absl::StrFormat("  [%d] %s\n", d.id, d.fingerprint);
  std::cout << absl::StrFormat("best configs (%d):\n", best->size());
  std::string last_group;
  for (const cache::BestConfig& b : *best) {
    const std::string group = absl::StrCat(b.problem_key, " on ", b.device_fingerprint);
    if (group != last_group) {
      std::cout << absl::StrFormat("  %s\n    %-13s %10s %10s %8s  %s\n", group, "bucket", "tuned_us", "default_us",
                                   "speedup", "variant");
      last_group = group;
    }
    const std::optional<double> d = defaults.For(b);
    std::cout << absl::StrFormat("    %-13s %10.2f %10s %8s  %s  (gen %d, nvrtc %d)\n", b.bucket, b.median_us,
                                 d ? absl::StrFormat("%.2f", *d) : "-",
                                 d && b.median_us > 0 ? absl::StrFormat("%.2fx", *d / b.median_us) : "-",
                                 ScheduleOf(b), b.generator_version, b.nvrtc_version);
  }
  std::cout << absl::StrFormat("measurements: %d (ok %d, failed %d, wrong %d, timeout %d)\n", ms->size(),
                               by_status["ok"], by_status["failed"], by_status["wrong"], by_status["timeout"]);
  std::cout << absl::StrFormat("runs (latest %d):\n", runs->size());
  for (const cache::RunInfo& r : *runs) std::cout << RunLine(r) << "\n";
  return kExitOk;
}

int RunExport(const DbCmdOptions& o) {
  absl::StatusOr<std::string> db = RequiredDbPath(o.db, "db export");
  if (!db.ok()) return Fail(kExitUsage, db.status().message());
  const std::string& path = *db;
  absl::StatusOr<std::unique_ptr<cache::Store>> store = OpenForReading(path);
  if (!store.ok()) return StoreError(store.status());
  if (std::filesystem::exists(o.file)) return Fail(kExitUsage, absl::StrCat(o.file, ": exists; not overwriting"));
  if (absl::Status s = (*store)->Export(o.file); !s.ok()) return StoreError(s);
  absl::StatusOr<std::unique_ptr<cache::Store>> copy = cache::Store::Open(o.file);
  if (!copy.ok()) return StoreError(copy.status());
  absl::StatusOr<cache::VerifyReport> v = (*copy)->Verify();
  if (!v.ok()) return StoreError(v.status());
  if (o.json) {
    std::cout << nlohmann::json{{"path", o.file}, {"row_counts", v->row_counts}}.dump(2) << "\n";
  } else {
    std::cout << absl::StrFormat("exported %s to %s:", path, o.file);
    for (const auto& [table, n] : v->row_counts) std::cout << absl::StrFormat(" %s %d", table, n);
    std::cout << "\n";
  }
  return kExitOk;
}

int RunImport(const DbCmdOptions& o) {
  absl::StatusOr<std::string> db = RequiredDbPath(o.db, "db import");
  if (!db.ok()) return Fail(kExitUsage, db.status().message());
  const std::string& path = *db;
  if (!std::filesystem::exists(o.file)) return Fail(kExitUsage, absl::StrCat(o.file, ": no such file"));
  absl::StatusOr<std::unique_ptr<cache::Store>> store = cache::Store::Open(path);  // created if missing
  if (!store.ok()) return StoreError(store.status());
  absl::StatusOr<cache::ImportStats> st = (*store)->Import(o.file, search::ImportChecks());
  if (!st.ok()) return StoreError(st.status());
  if (o.json) {
    std::cout << nlohmann::json(*st).dump(2) << "\n";
    return kExitOk;
  }
  std::cout << absl::StrFormat("merged %s into %s (inserted / updated / skipped):\n", o.file, path);
  const std::pair<const char*, const cache::RowCounts*> rows[] = {
      {"devices", &st->devices},           {"problems", &st->problems}, {"variants", &st->variants},
      {"runs", &st->runs},                 {"measurements", &st->measurements},
      {"best_configs", &st->best_configs}, {"binaries", &st->binaries}};
  for (const auto& [name, c] : rows)
    std::cout << absl::StrFormat("  %-13s %6d %6d %6d\n", name, c->inserted, c->updated, c->skipped);
  std::cout << "  (binaries are never imported: they are compiled again on demand";
  if (st->binaries.conflicts > 0)
    std::cout << absl::StrFormat("; %d held here with other content, ours kept", st->binaries.conflicts);
  std::cout << ")\n";
  return kExitOk;
}

int RunVerify(const DbCmdOptions& o) {
  absl::StatusOr<std::string> db = RequiredDbPath(o.db, "db verify");
  if (!db.ok()) return Fail(kExitUsage, db.status().message());
  const std::string& path = *db;
  absl::StatusOr<std::unique_ptr<cache::Store>> store = OpenForReading(path);
  if (!store.ok()) return StoreError(store.status());
  absl::StatusOr<cache::VerifyReport> v = (*store)->Verify();
  if (!v.ok()) return StoreError(v.status());
  if (o.json) {
    std::cout << nlohmann::json(*v).dump(2) << "\n";
  } else {
    std::cout << absl::StrFormat("%s: %s (schema v%d)\n", path, v->ok ? "ok" : "DAMAGED", v->schema_version);
    for (const std::string& e : v->integrity_errors) std::cout << "  integrity: " << e << "\n";
    for (const std::string& e : v->foreign_key_errors) std::cout << "  foreign key: " << e << "\n";
    for (const auto& [table, n] : v->row_counts) std::cout << absl::StrFormat("  %-13s %d rows\n", table, n);
  }
  if (!v->ok) return Fail(kExitFailure, absl::StrCat(path, ": integrity check failed"));
  return kExitOk;
}

void Common(CLI::App* sub, DbCmdOptions& o) {
  AddDbOption(*sub, o.db, "Tuning database");
  sub->add_flag("--json", o.json, "Print JSON instead of a table");
}

Action SetupDb(CLI::App& cmd) {
  auto o = std::make_shared<DbCmdOptions>();
  cmd.require_subcommand(1);
  CLI::App* show = cmd.add_subcommand(
      "show",
      "Devices, best configs per bucket (numeric order) with the default's time and the speedup, "
      "measurement counts, recent runs. Read-only: never creates, migrates or writes the file");
  Common(show, *o);
  show->add_option("--plot", o->plot, "Also write an SVG of tuned vs default time per bucket to FILE")
      ->type_name("FILE.svg");
  CLI::App* exp = cmd.add_subcommand("export", "Write a self-contained copy of the database to FILE (read-only on it)");
  Common(exp, *o);
  exp->add_option("file", o->file, "Destination (must not exist)")->required();
  CLI::App* imp = cmd.add_subcommand(
      "import",
      "Merge FILE into the database and print what changed. FILE is untrusted input: its schema "
      "and every row are checked first and a bad file is refused whole, naming its first bad "
      "row; binaries are never imported (docs/security.md)");
  Common(imp, *o);
  imp->add_option("file", o->file, "A database written by `db export` (or any tuner database)")->required();
  CLI::App* ver = cmd.add_subcommand("verify", "Integrity and foreign-key check, row counts (read-only)");
  Common(ver, *o);
  return [o, show, exp, imp, ver] {
    search::LogToStderr();  // stdout is the command's output
    if (show->parsed()) return RunShow(*o);
    if (exp->parsed()) return RunExport(*o);
    if (imp->parsed()) return RunImport(*o);
    if (ver->parsed()) return RunVerify(*o);
    return Fail(kExitUsage, "db needs a subcommand: show, export, import or verify");
  };
}

}  // namespace

PLX_REGISTER_COMMAND(db, 60, "Show, export, import or verify a tuning database", SetupDb);

}  // namespace parallax::cli
