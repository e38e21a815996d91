// `parallax db show|export|import|verify`: look into, copy, merge and check a tuning database
// without a GPU.
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "../include/parallax/service/json_read.h"  // header-only; also built without the service
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cli_io.h"
#include "parallax/cache/json.h"
#include "parallax/cache/store.h"
#include "parallax/search/import_checks.h"
#include "parallax/search/tune_args.h"
#include "parallax/search/logging.h"
#include "registry.h"

namespace parallax::cli {
namespace {

constexpr int kShownRuns = 10;

struct DbCmdOptions {
  std::string db;
  bool json = false;
  std::string file;  // export / import
};

std::string DbPath(const DbCmdOptions& o) { return o.db.empty() ? search::DefaultDbPath() : o.db; }

// An existing database: reading commands must not create an empty file by mistake.
absl::StatusOr<std::unique_ptr<cache::Store>> OpenExisting(const std::string& path) {
  if (!std::filesystem::exists(path))
    return absl::NotFoundError(absl::StrCat(path, ": no tuning database there (see --db)"));
  return cache::Store::Open(path);
}

int StoreError(const absl::Status& s) {
  return Fail(s.code() == absl::StatusCode::kNotFound || s.code() == absl::StatusCode::kInvalidArgument ||
                      s.code() == absl::StatusCode::kDataLoss || s.code() == absl::StatusCode::kAlreadyExists
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
  return absl::StrFormat("%s %s %s", head, problem_key, has_strategy ? service::SafeDump(strategy) : "");
}

int RunShow(const DbCmdOptions& o) {
  const std::string path = DbPath(o);
  absl::StatusOr<std::unique_ptr<cache::Store>> store = OpenExisting(path);
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
  std::map<std::string, int64_t> by_status = {{"ok", 0}, {"failed", 0}, {"wrong", 0}, {"timeout", 0}};
  for (const cache::Measurement& m : *ms) ++by_status[std::string(cache::ToString(m.status))];

  if (o.json) {
    nlohmann::json counts = {{"total", ms->size()}};
    for (const auto& [k, n] : by_status) counts[k] = n;
    const nlohmann::json j = {{"path", path},         {"schema_version", *schema}, {"devices", *devices},
                              {"best_configs", *best}, {"runs", *runs},            {"measurements", counts}};
    std::cout << service::SafeDump(j, 2) << "\n";  // a row's text that never parsed may not be UTF-8
    return kExitOk;
  }
  std::cout << absl::StrFormat("database %s (schema v%d)\n", path, *schema);
  std::cout << absl::StrFormat("devices (%d):\n", devices->size());
  for (const cache::DeviceInfo& d : *devices) std::cout << absl::StrFormat("  [%d] %s\n", d.id, d.fingerprint);
  std::cout << absl::StrFormat("best configs (%d):\n", best->size());
  std::string last_problem;
  for (const cache::BestConfig& b : *best) {
    if (b.problem_key != last_problem) {
      std::cout << absl::StrFormat("  %s on %s\n", b.problem_key, b.device_fingerprint);
      last_problem = b.problem_key;
    }
    const std::string key = b.variant_key.substr(std::min(b.variant_key.size(), b.problem_key.size() + 1));
    std::cout << absl::StrFormat("    %-13s %10.2f us  %s  (gen %d, nvrtc %d)\n", b.bucket, b.median_us, key,
                                 b.generator_version, b.nvrtc_version);
  }
  std::cout << absl::StrFormat("measurements: %d (ok %d, failed %d, wrong %d, timeout %d)\n", ms->size(),
                               by_status["ok"], by_status["failed"], by_status["wrong"], by_status["timeout"]);
  std::cout << absl::StrFormat("runs (latest %d):\n", runs->size());
  for (const cache::RunInfo& r : *runs) std::cout << RunLine(r) << "\n";
  return kExitOk;
}

int RunExport(const DbCmdOptions& o) {
  const std::string path = DbPath(o);
  absl::StatusOr<std::unique_ptr<cache::Store>> store = OpenExisting(path);
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
  const std::string path = DbPath(o);
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
  const std::string path = DbPath(o);
  absl::StatusOr<std::unique_ptr<cache::Store>> store = OpenExisting(path);
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
  sub->add_option("--db", o.db, absl::StrCat("Tuning database (default ", search::DefaultDbPath(), ")"));
  sub->add_flag("--json", o.json, "Print JSON");
}

Action SetupDb(CLI::App& cmd) {
  auto o = std::make_shared<DbCmdOptions>();
  cmd.require_subcommand(1);
  CLI::App* show = cmd.add_subcommand("show", "Devices, best configs per bucket, measurement counts, recent runs");
  Common(show, *o);
  CLI::App* exp = cmd.add_subcommand("export", "Write a self-contained copy of the database to FILE");
  Common(exp, *o);
  exp->add_option("file", o->file, "Destination (must not exist)")->required();
  CLI::App* imp = cmd.add_subcommand(
      "import",
      "Merge FILE into the database and print what changed. FILE is untrusted input: its schema "
      "and every row are checked first and a bad file is refused whole, naming its first bad "
      "row; binaries are never imported (docs/security.md)");
  Common(imp, *o);
  imp->add_option("file", o->file, "A database written by `db export` (or any tuner database)")->required();
  CLI::App* ver = cmd.add_subcommand("verify", "Integrity and foreign-key check, row counts");
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
