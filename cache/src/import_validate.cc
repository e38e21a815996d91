#include "import_validate.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <unordered_set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "import_source.h"
#include "parallax/cache/rows.h"
#include "parallax/cache/stmt.h"

namespace parallax::cache::internal {
namespace {

constexpr size_t kMaxKeyBytes = 512;
constexpr size_t kMaxNameBytes = 256;
constexpr size_t kMaxBucketBytes = 64;
constexpr size_t kMaxJsonBytes = 1 << 20;
constexpr size_t kMaxErrorTextBytes = 64 << 10;
constexpr int64_t kMaxVersion = 1000000000;

enum class Kind { kInt, kReal, kText, kBlob };

// One column of a source table and the SQL storage class it must hold.
struct Column {
  const char* name;
  Kind kind;
  bool nullable = false;
};

using Ids = std::unordered_set<int64_t>;

// A source row whose columns already have the right storage classes. The statement selects
// the values first and their typeof() after them.
class Row {
 public:
  Row(const Stmt& stmt, const std::vector<Column>& columns) : stmt_(stmt), columns_(columns) {}
  bool IsNull(absl::string_view c) const { return stmt_.IsNull(Index(c)); }
  int64_t Int(absl::string_view c) const { return stmt_.Int(Index(c)); }
  double Real(absl::string_view c) const { return stmt_.Double(Index(c)); }
  std::string Text(absl::string_view c) const { return stmt_.Text(Index(c)); }

  absl::Status CheckTypes() const {
    const int n = static_cast<int>(columns_.size());
    for (int i = 0; i < n; ++i) {
      const Column& c = columns_[i];
      const std::string type = stmt_.Text(n + i);
      if (type == "null") {
        if (c.nullable) continue;
        return absl::InvalidArgumentError(absl::StrCat(c.name, " is NULL"));
      }
      const bool ok = (c.kind == Kind::kInt && type == "integer") ||
                      (c.kind == Kind::kReal && (type == "real" || type == "integer")) ||
                      (c.kind == Kind::kText && type == "text") ||
                      (c.kind == Kind::kBlob && type == "blob");
      if (!ok) return absl::InvalidArgumentError(absl::StrCat(c.name, " holds a ", type));
    }
    return absl::OkStatus();
  }

 private:
  int Index(absl::string_view name) const {
    for (size_t i = 0; i < columns_.size(); ++i) {
      if (name == columns_[i].name) return static_cast<int>(i);
    }
    return -1;  // a programming error: sqlite answers NULL / 0 for a bad index
  }
  const Stmt& stmt_;
  const std::vector<Column>& columns_;
};

absl::Status Bad(absl::string_view what) { return absl::InvalidArgumentError(what); }

// Reads every row of `table`, type-checks it, then hands it to `check`. The first failure
// becomes "<table> row <id>: <why>".
template <typename Check>
absl::Status ForEachRow(Db& src, const ImportControl& control, absl::string_view table,
                        const std::vector<Column>& columns, Check&& check) {
  std::vector<std::string> names, types;
  for (const Column& c : columns) {
    names.push_back(c.name);
    types.push_back(absl::StrCat("typeof(", c.name, ")"));
  }
  absl::StatusOr<Stmt> stmt =
      src.Prepare(absl::StrCat("SELECT ", absl::StrJoin(names, ", "), ", ",
                               absl::StrJoin(types, ", "), " FROM ", table));
  if (!stmt.ok()) return control.Explain(SourceFault(src.path(), stmt.status()));
  while (true) {
    absl::StatusOr<bool> more = stmt->Step();
    if (!more.ok()) return control.Explain(SourceFault(src.path(), more.status()));
    if (!*more) return absl::OkStatus();
    const Row row(*stmt, columns);
    absl::Status s = row.CheckTypes();
    if (s.ok()) s = check(row);
    if (!s.ok()) {
      // The first column names the row: its id, or its key for binaries.
      return Bad(absl::StrCat("import file rejected: ", table, " row ",
                              stmt->Text(0).substr(0, 80), ": ", s.message()));
    }
  }
}

absl::Status CheckText(absl::string_view what, absl::string_view text, size_t max_bytes,
                       bool allow_empty) {
  if (text.empty() && !allow_empty) return Bad(absl::StrCat(what, " is empty"));
  if (text.size() > max_bytes) {
    return Bad(absl::StrCat(what, " is ", text.size(), " bytes (at most ", max_bytes, ")"));
  }
  return absl::OkStatus();
}

// Keys and buckets are printable ASCII without spaces; fingerprints ("NVIDIA H200|sm_90|...")
// may hold spaces.
absl::Status CheckToken(absl::string_view what, absl::string_view text, size_t max_bytes,
                        bool allow_empty = false, bool allow_spaces = false) {
  if (absl::Status s = CheckText(what, text, max_bytes, allow_empty); !s.ok()) return s;
  for (char ch : text) {
    if (ch == ' ' && allow_spaces) continue;
    if (ch <= ' ' || ch > '~') return Bad(absl::StrCat(what, " has a space or a non-printable character"));
  }
  return absl::OkStatus();
}

absl::Status CheckKey(absl::string_view what, absl::string_view key,
                      const std::function<absl::Status(absl::string_view)>& checker) {
  if (absl::Status s = CheckToken(what, key, kMaxKeyBytes); !s.ok()) return s;
  if (!checker) return absl::OkStatus();
  if (absl::Status s = checker(key); !s.ok()) {
    return Bad(absl::StrCat(what, " '", key.substr(0, 120), "' is refused: ",
                            absl::string_view(s.message()).substr(0, 200)));
  }
  return absl::OkStatus();
}

absl::Status CheckRange(absl::string_view what, int64_t v, int64_t lo, int64_t hi) {
  if (v >= lo && v <= hi) return absl::OkStatus();
  return Bad(absl::StrCat(what, "=", v, " is outside [", lo, ", ", hi, "]"));
}

absl::Status CheckPositive(absl::string_view what, double v) {
  if (std::isfinite(v) && v > 0) return absl::OkStatus();
  return Bad(absl::StrCat(what, "=", v, " is not a finite positive number"));
}

absl::Status CheckRef(absl::string_view what, int64_t id, const Ids& ids) {
  if (ids.count(id)) return absl::OkStatus();
  return Bad(absl::StrCat(what, "=", id, " refers to no row"));
}

// The fields the tuner and the service store in a run's params, with their JSON types.
absl::Status CheckRunParams(const nlohmann::json& j) {
  auto is_int = [](const nlohmann::json& v) { return v.is_number_integer(); };
  auto is_num = [](const nlohmann::json& v) { return v.is_number() && std::isfinite(v.get<double>()); };
  auto is_str = [](const nlohmann::json& v) { return v.is_string(); };
  auto array_of = [](bool (*element_ok)(const nlohmann::json&)) {
    return [element_ok](const nlohmann::json& v) {
      return v.is_array() && std::all_of(v.begin(), v.end(), element_ok);
    };
  };
  const struct {
    const char* name;
    std::function<bool(const nlohmann::json&)> ok;
    const char* want;
  } fields[] = {
      {"problems", array_of([](const nlohmann::json& p) { return p.is_object(); }), "an array of objects"},
      {"buckets", array_of([](const nlohmann::json& b) { return b.is_string(); }), "an array of strings"},
      {"budget_seconds", is_num, "a number"},
      {"budget_s", is_num, "a number"},
      {"strategy", is_str, "a string"},
      {"problem_key", is_str, "a string"},
      {"device_fingerprint", is_str, "a string"},
      {"requested_device", is_int, "an integer"},
      {"device_ordinal", is_int, "an integer"},
      {"resumed_from_job_id", is_int, "an integer"},
      {"seed", is_int, "an integer"},
      {"generator_version", is_int, "an integer"},
  };
  for (const auto& f : fields) {
    auto it = j.find(f.name);
    if (it != j.end() && !f.ok(*it)) {
      return Bad(absl::StrCat("params_json field '", f.name, "' is not ", f.want));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<nlohmann::json> JsonObject(absl::string_view what, const std::string& text) {
  if (absl::Status s = CheckText(what, text, kMaxJsonBytes, false); !s.ok()) return s;
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Bad(absl::StrCat(what, " is not valid JSON"));
  if (!j.is_object()) return Bad(absl::StrCat(what, " is not a JSON object"));
  return j;
}

// Each table's columns as this build writes them.
const std::vector<Column> kDevices = {
    {"id", Kind::kInt},          {"fingerprint", Kind::kText},   {"name", Kind::kText},
    {"sm_count", Kind::kInt},    {"cc_major", Kind::kInt},       {"cc_minor", Kind::kInt},
    {"clock_khz", Kind::kInt},   {"mem_bytes", Kind::kInt},      {"l2_bytes", Kind::kInt},
    {"driver_version", Kind::kInt}, {"nvrtc_version", Kind::kInt}, {"created_at", Kind::kInt}};
const std::vector<Column> kProblems = {
    {"id", Kind::kInt}, {"key", Kind::kText}, {"json", Kind::kText}};
const std::vector<Column> kVariants = {
    {"id", Kind::kInt}, {"key", Kind::kText}, {"generator_version", Kind::kInt}};
const std::vector<Column> kRuns = {
    {"id", Kind::kInt},          {"device_id", Kind::kInt},
    {"started_at", Kind::kInt},  {"finished_at", Kind::kInt, true},
    {"status", Kind::kText},     {"params_json", Kind::kText},
    {"progress_json", Kind::kText}};
const std::vector<Column> kMeasurements = {
    {"id", Kind::kInt},
    {"run_id", Kind::kInt, true},
    {"device_id", Kind::kInt},
    {"problem_id", Kind::kInt},
    {"variant_id", Kind::kInt},
    {"bucket", Kind::kText},
    {"status", Kind::kText},
    {"median_us", Kind::kReal, true},
    {"min_us", Kind::kReal, true},
    {"max_us", Kind::kReal, true},
    {"reps", Kind::kInt},
    {"error_text", Kind::kText},
    {"rel_error", Kind::kReal, true},
    {"measured_at", Kind::kInt},
    {"generator_version", Kind::kInt},
    {"nvrtc_version", Kind::kInt}};
const std::vector<Column> kBestConfigs = {
    {"rowid", Kind::kInt},          {"device_id", Kind::kInt},     {"problem_key", Kind::kText},
    {"bucket", Kind::kText},        {"variant_key", Kind::kText},  {"median_us", Kind::kReal},
    {"generator_version", Kind::kInt}, {"nvrtc_version", Kind::kInt}, {"updated_at", Kind::kInt}};
const std::vector<Column> kBinaries = {
    {"key", Kind::kText},           {"arch", Kind::kText},          {"generator_version", Kind::kInt},
    {"nvrtc_version", Kind::kInt},  {"driver_version", Kind::kInt}, {"source_hash", Kind::kText},
    {"cubin", Kind::kBlob},         {"log", Kind::kText},           {"created_at", Kind::kInt}};

constexpr int64_t kMaxInt = INT64_MAX;
constexpr int64_t kMaxInt32 = INT32_MAX;

}  // namespace

absl::Status ValidateSource(Db& src, const ImportOptions& o, const ImportControl& control) {
  Ids devices, problems, variants, runs;
  absl::Status s = ForEachRow(src, control, "devices", kDevices, [&](const Row& r) -> absl::Status {
    if (absl::Status e = CheckToken("fingerprint", r.Text("fingerprint"), kMaxNameBytes, false, /*allow_spaces=*/true); !e.ok())
      return e;
    if (absl::Status e = CheckText("name", r.Text("name"), kMaxNameBytes, true); !e.ok()) return e;
    for (const char* c : {"sm_count", "cc_major", "cc_minor", "driver_version", "nvrtc_version"}) {
      if (absl::Status e = CheckRange(c, r.Int(c), 0, kMaxInt32); !e.ok()) return e;
    }
    for (const char* c : {"clock_khz", "mem_bytes", "l2_bytes", "created_at"}) {
      if (absl::Status e = CheckRange(c, r.Int(c), 0, kMaxInt); !e.ok()) return e;
    }
    devices.insert(r.Int("id"));
    return absl::OkStatus();
  });
  if (s.ok()) s = ForEachRow(src, control, "problems", kProblems, [&](const Row& r) -> absl::Status {
    if (absl::Status e = CheckKey("key", r.Text("key"), o.check_problem_key); !e.ok()) return e;
    if (absl::StatusOr<nlohmann::json> j = JsonObject("json", r.Text("json")); !j.ok()) return j.status();
    problems.insert(r.Int("id"));
    return absl::OkStatus();
  });
  if (s.ok()) s = ForEachRow(src, control, "variants", kVariants, [&](const Row& r) -> absl::Status {
    if (absl::Status e = CheckKey("key", r.Text("key"),
                                  o.check_recorded_variant_key ? o.check_recorded_variant_key
                                                               : o.check_variant_key);
        !e.ok()) {
      return e;
    }
    if (absl::Status e = CheckRange("generator_version", r.Int("generator_version"), 1, kMaxVersion); !e.ok())
      return e;
    variants.insert(r.Int("id"));
    return absl::OkStatus();
  });
  if (s.ok()) s = ForEachRow(src, control, "tuning_runs", kRuns, [&](const Row& r) -> absl::Status {
    if (absl::Status e = CheckRef("device_id", r.Int("device_id"), devices); !e.ok()) return e;
    if (absl::Status e = CheckRange("started_at", r.Int("started_at"), 1, kMaxInt); !e.ok()) return e;
    if (!r.IsNull("finished_at")) {
      if (absl::Status e = CheckRange("finished_at", r.Int("finished_at"), 0, kMaxInt); !e.ok()) return e;
    }
    if (absl::StatusOr<RunStatus> st = ParseRunStatus(r.Text("status")); !st.ok()) {
      return Bad(absl::StrCat("status '", r.Text("status").substr(0, 40), "' is not a run status"));
    }
    absl::StatusOr<nlohmann::json> params = JsonObject("params_json", r.Text("params_json"));
    if (!params.ok()) return params.status();
    if (absl::Status e = CheckRunParams(*params); !e.ok()) return e;
    if (absl::StatusOr<nlohmann::json> p = JsonObject("progress_json", r.Text("progress_json")); !p.ok())
      return p.status();
    runs.insert(r.Int("id"));
    return absl::OkStatus();
  });
  if (s.ok()) s = ForEachRow(src, control, "measurements", kMeasurements, [&](const Row& r) -> absl::Status {
    if (!r.IsNull("run_id")) {
      if (absl::Status e = CheckRef("run_id", r.Int("run_id"), runs); !e.ok()) return e;
    }
    if (absl::Status e = CheckRef("device_id", r.Int("device_id"), devices); !e.ok()) return e;
    if (absl::Status e = CheckRef("problem_id", r.Int("problem_id"), problems); !e.ok()) return e;
    if (absl::Status e = CheckRef("variant_id", r.Int("variant_id"), variants); !e.ok()) return e;
    if (absl::Status e = CheckToken("bucket", r.Text("bucket"), kMaxBucketBytes, true); !e.ok()) return e;
    absl::StatusOr<MeasurementStatus> st = ParseMeasurementStatus(r.Text("status"));
    if (!st.ok()) return Bad(absl::StrCat("status '", r.Text("status").substr(0, 40), "' is not a measurement status"));
    for (const char* c : {"median_us", "min_us", "max_us"}) {
      if (r.IsNull(c)) {
        if (*st == MeasurementStatus::kOk) return Bad(absl::StrCat(c, " is missing on an ok measurement"));
        continue;
      }
      if (absl::Status e = CheckPositive(c, r.Real(c)); !e.ok()) return e;
    }
    if (*st == MeasurementStatus::kOk &&
        !(r.Real("min_us") <= r.Real("median_us") && r.Real("median_us") <= r.Real("max_us"))) {
      return Bad("timings are not ordered min_us <= median_us <= max_us");
    }
    if (!r.IsNull("rel_error") && !(std::isfinite(r.Real("rel_error")) && r.Real("rel_error") >= 0)) {
      return Bad("rel_error is not a finite non-negative number");
    }
    if (absl::Status e = CheckRange("reps", r.Int("reps"), 0, kMaxInt32); !e.ok()) return e;
    if (absl::Status e = CheckText("error_text", r.Text("error_text"), kMaxErrorTextBytes, true); !e.ok())
      return e;
    if (absl::Status e = CheckRange("measured_at", r.Int("measured_at"), 1, kMaxInt); !e.ok()) return e;
    if (absl::Status e = CheckRange("generator_version", r.Int("generator_version"), 1, kMaxVersion); !e.ok())
      return e;
    return CheckRange("nvrtc_version", r.Int("nvrtc_version"), 0, kMaxVersion);
  });
  if (s.ok()) s = ForEachRow(src, control, "best_configs", kBestConfigs, [&](const Row& r) -> absl::Status {
    if (absl::Status e = CheckRef("device_id", r.Int("device_id"), devices); !e.ok()) return e;
    const std::string problem = r.Text("problem_key"), variant = r.Text("variant_key");
    if (absl::Status e = CheckKey("problem_key", problem, o.check_problem_key); !e.ok()) return e;
    if (absl::Status e = CheckKey("variant_key", variant, o.check_variant_key); !e.ok()) return e;
    if (!absl::StartsWith(variant, absl::StrCat(problem, "."))) {
      return Bad("variant_key is not a variant of problem_key");
    }
    if (absl::Status e = CheckToken("bucket", r.Text("bucket"), kMaxBucketBytes, true); !e.ok()) return e;
    if (absl::Status e = CheckPositive("median_us", r.Real("median_us")); !e.ok()) return e;
    if (absl::Status e = CheckRange("generator_version", r.Int("generator_version"), 1, kMaxVersion); !e.ok())
      return e;
    if (absl::Status e = CheckRange("nvrtc_version", r.Int("nvrtc_version"), 0, kMaxVersion); !e.ok()) return e;
    return CheckRange("updated_at", r.Int("updated_at"), 0, kMaxInt);
  });
  // Binaries are never merged (store.h), but a row of the wrong shape still marks a
  // file that this build did not write.
  if (s.ok()) s = ForEachRow(src, control, "binaries", kBinaries, [&](const Row& r) -> absl::Status {
    return CheckToken("key", r.Text("key"), kMaxKeyBytes);
  });
  return s;
}

}  // namespace parallax::cache::internal
