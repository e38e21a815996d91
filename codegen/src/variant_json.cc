#include "parallax/codegen/variant_json.h"

#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace parallax {
namespace {

using nlohmann::json;

const char* LayoutName(KvLayout l) { return l == KvLayout::kPaged ? "paged" : "contiguous"; }

constexpr std::initializer_list<std::pair<const char*, Schedule::TestFault>> kTestFaultNames = {
    {"none", Schedule::TestFault::kNone},
    {"illegal_address", Schedule::TestFault::kIllegalAddress},
    {"hang", Schedule::TestFault::kHang}};

// The backward's dQ reduction, spelled like its key token (the default, atomic, has none).
constexpr std::initializer_list<std::pair<const char*, Schedule::DqReduce>> kDqReduceNames = {
    {"atomic", Schedule::DqReduce::kAtomic},
    {"bulk", Schedule::DqReduce::kBulk},
    {"det", Schedule::DqReduce::kDeterministic}};

const char* TestFaultName(Schedule::TestFault f) {
  for (const auto& [name, value] : kTestFaultNames)
    if (value == f) return name;
  return "?";
}

absl::Status JsonError(absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("variant JSON: ", what));
}

// Field access for one JSON object ("problem", "schedule", ...): every error names the
// dotted path of the field so a user can find it in a large document.
class ObjectReader {
 public:
  ObjectReader(const json& obj, std::string path) : obj_(obj), path_(std::move(path)) {}

  bool Has(const char* name) const { return obj_.contains(name); }
  std::string Path(const char* name) const {
    return path_.empty() ? std::string(name) : absl::StrCat(path_, ".", name);
  }

  // Appends the dotted names of fields not in `known` to *unknown.
  void CollectUnknown(std::initializer_list<const char*> known, std::vector<std::string>* unknown) const {
    for (const auto& [name, value] : obj_.items()) {
      bool found = false;
      for (const char* k : known) found = found || name == k;
      if (!found) unknown->push_back(absl::StrCat("'", Path(name.c_str()), "'"));
    }
  }

  absl::Status Int(const char* name, bool required, int* out) const {
    if (!Has(name)) return Missing(name, required);
    const json& v = obj_.at(name);
    if (!v.is_number_integer()) return TypeError(name, "an integer", v);
    // Out-of-range values are type errors too: they cannot be an int field.
    if (v.is_number_unsigned() ? v.get<uint64_t>() > uint64_t{std::numeric_limits<int>::max()}
                               : (v.get<int64_t>() < std::numeric_limits<int>::min() ||
                                  v.get<int64_t>() > std::numeric_limits<int>::max()))
      return JsonError(absl::StrCat(Path(name), ": ", v.dump(), " does not fit in an int"));
    *out = v.get<int>();
    return absl::OkStatus();
  }

  absl::Status Bool(const char* name, bool required, bool* out) const {
    if (!Has(name)) return Missing(name, required);
    const json& v = obj_.at(name);
    if (!v.is_boolean()) return TypeError(name, "true or false", v);
    *out = v.get<bool>();
    return absl::OkStatus();
  }

  absl::Status String(const char* name, bool required, std::string* out) const {
    if (!Has(name)) return Missing(name, required);
    const json& v = obj_.at(name);
    if (!v.is_string()) return TypeError(name, "a string", v);
    *out = v.get<std::string>();
    return absl::OkStatus();
  }

  // A string that must be one of `choices`, each mapped to an enum value.
  template <typename E>
  absl::Status Enum(const char* name, bool required,
                    std::initializer_list<std::pair<const char*, E>> choices, E* out) const {
    std::string s;
    if (!Has(name)) return Missing(name, required);
    if (absl::Status st = String(name, required, &s); !st.ok()) return st;
    std::vector<std::string> names;
    for (const auto& [word, value] : choices) {
      if (s == word) {
        *out = value;
        return absl::OkStatus();
      }
      names.push_back(word);
    }
    return JsonError(absl::StrCat(Path(name), ": '", s, "' is not one of ", absl::StrJoin(names, ", ")));
  }

 private:
  absl::Status Missing(const char* name, bool required) const {
    return required ? JsonError(absl::StrCat(Path(name), ": required field is missing"))
                    : absl::OkStatus();
  }
  absl::Status TypeError(const char* name, absl::string_view want, const json& got) const {
    return JsonError(absl::StrCat(Path(name), ": expected ", want, ", got ", got.type_name()));
  }

  const json& obj_;
  std::string path_;
};

#define PLX_RETURN_IF_ERROR(expr)              \
  do {                                         \
    if (absl::Status _st = (expr); !_st.ok()) \
      return _st;                              \
  } while (0)

absl::Status ReadProblem(const ObjectReader& r, Problem* p) {
  PLX_RETURN_IF_ERROR(r.Enum<Mode>("mode", true, {{"decode", Mode::kDecode}, {"prefill", Mode::kPrefill}, {"bwd", Mode::kBackward}},
                                   &p->mode));
  PLX_RETURN_IF_ERROR(
      r.Enum<DType>("dtype", true, {{"bf16", DType::kBF16}, {"fp16", DType::kFP16}}, &p->dtype));
  PLX_RETURN_IF_ERROR(r.Int("head_dim", true, &p->head_dim));
  PLX_RETURN_IF_ERROR(r.Int("num_q_heads", true, &p->num_q_heads));
  PLX_RETURN_IF_ERROR(r.Int("num_kv_heads", true, &p->num_kv_heads));
  PLX_RETURN_IF_ERROR(r.Enum<KvLayout>(
      "kv_layout", false, {{"contiguous", KvLayout::kContiguous}, {"paged", KvLayout::kPaged}},
      &p->kv_layout));
  PLX_RETURN_IF_ERROR(r.Int("page_size", false, &p->page_size));
  PLX_RETURN_IF_ERROR(r.Int("queries", false, &p->queries));
  return r.Bool("window", false, &p->window);
}

absl::Status ReadAlgorithm(const ObjectReader& r, Algorithm* a) {
  PLX_RETURN_IF_ERROR(r.Enum<Probe>("probe", false, {{"none", Probe::kNone}, {"learned", Probe::kLearned}},
                                    &a->probe));
  return r.Enum<Affine>("affine", false, {{"plain", Affine::kPlain}, {"amplified", Affine::kAmplified}},
                        &a->affine);
}

absl::Status ReadSchedule(const ObjectReader& r, const Problem& p, const Algorithm& a,
                          const VariantParseOptions& o, Schedule* s) {
  // Start from the fields that do not apply to either mode being 0, so an absent
  // heads_per_cta / block_m can take CanonicalSchedule's choice below.
  *s = Schedule{};
  s->heads_per_cta = 0;
  s->block_m = 0;
  PLX_RETURN_IF_ERROR(
      r.Enum<MathPath>("path", false, {{"mma", MathPath::kMma}, {"fma", MathPath::kFma}, {"wgmma", MathPath::kWgmma}}, &s->path));
  PLX_RETURN_IF_ERROR(r.Int("block_n", false, &s->block_n));
  PLX_RETURN_IF_ERROR(r.Int("warps", false, &s->warps));
  PLX_RETURN_IF_ERROR(r.Int("stages", false, &s->stages));
  PLX_RETURN_IF_ERROR(r.Int("splits", false, &s->splits));
  PLX_RETURN_IF_ERROR(r.Int("heads_per_cta", false, &s->heads_per_cta));
  PLX_RETURN_IF_ERROR(r.Int("block_m", false, &s->block_m));
  PLX_RETURN_IF_ERROR(r.Bool("fused_merge", false, &s->fused_merge));
  PLX_RETURN_IF_ERROR(r.Bool("pingpong", false, &s->pingpong));
  PLX_RETURN_IF_ERROR(r.Bool("persistent", false, &s->persistent));
  PLX_RETURN_IF_ERROR(r.Enum<Schedule::TestFault>("test_fault", false, kTestFaultNames, &s->test_fault));
  PLX_RETURN_IF_ERROR(r.Enum<Schedule::DqReduce>("dq_reduce", false, kDqReduceNames, &s->dq_reduce));
  if (s->test_fault != Schedule::TestFault::kNone && !o.allow_test_faults)
    return JsonError(absl::StrCat(r.Path("test_fault"), ": '", TestFaultName(s->test_fault),
                                  "' makes a test-only variant (it faults or hangs on purpose); only the "
                                  "tuner's isolation check accepts one"));
  const Schedule canon = CanonicalSchedule(p, a, *s);
  if (!r.Has("heads_per_cta")) s->heads_per_cta = canon.heads_per_cta;
  if (!r.Has("block_m")) s->block_m = canon.block_m;
  return absl::OkStatus();
}

absl::Status RequireObject(const json& j, const std::string& path) {
  if (j.is_object()) return absl::OkStatus();
  return JsonError(absl::StrCat(path.empty() ? "the document" : path, ": expected an object, got ",
                                j.type_name()));
}

}  // namespace

json ToJson(const Variant& v) {
  const Problem& p = v.problem();
  const Algorithm& a = v.algorithm();
  const Schedule& s = v.schedule();
  json j;
  j["key"] = v.Key();
  j["hash"] = v.HashHex();
  j["generator_version"] = kGeneratorVersion;
  j["problem"] = {{"mode", ToString(p.mode)},
                  {"dtype", ToString(p.dtype)},
                  {"head_dim", p.head_dim},
                  {"num_q_heads", p.num_q_heads},
                  {"num_kv_heads", p.num_kv_heads},
                  {"kv_layout", LayoutName(p.kv_layout)},
                  {"page_size", p.page_size},
                  {"window", p.window}};
  if (p.queries != 1) j["problem"]["queries"] = p.queries;  // multi-token decode only
  j["algorithm"] = {{"probe", ToString(a.probe)}, {"affine", ToString(a.affine)}};
  j["schedule"] = {{"path", ToString(s.path)},       {"block_n", s.block_n},
                   {"warps", s.warps},               {"stages", s.stages},
                   {"splits", s.splits},             {"heads_per_cta", s.heads_per_cta},
                   {"block_m", s.block_m},           {"fused_merge", s.fused_merge}};
  // Written only when set, so that other families' JSON never mentions them.
  if (s.pingpong) j["schedule"]["pingpong"] = true;
  if (s.persistent) j["schedule"]["persistent"] = true;
  if (s.test_fault != Schedule::TestFault::kNone) j["schedule"]["test_fault"] = TestFaultName(s.test_fault);
  for (const auto& [name, value] : kDqReduceNames)
    if (s.dq_reduce != Schedule::DqReduce::kAtomic && value == s.dq_reduce) j["schedule"]["dq_reduce"] = name;
  return j;
}

absl::StatusOr<Variant> VariantFromJson(const json& j, const VariantParseOptions& o) {
  PLX_RETURN_IF_ERROR(RequireObject(j, ""));
  const ObjectReader top(j, "");
  const bool structured = top.Has("problem") || top.Has("algorithm") || top.Has("schedule");
  if (!top.Has("key") && !structured)
    return JsonError("expected a \"key\" or a \"problem\" with \"algorithm\" and \"schedule\"");
  for (const char* part : {"problem", "algorithm", "schedule"})
    if (top.Has(part)) PLX_RETURN_IF_ERROR(RequireObject(j.at(part), part));
  if (structured && !top.Has("problem")) return JsonError("problem: required field is missing");

  // Unknown fields first, all of them at once: typos are the common mistake.
  std::vector<std::string> unknown;
  top.CollectUnknown({"key", "hash", "generator_version", "problem", "algorithm", "schedule"}, &unknown);
  const json kEmpty = json::object();
  const ObjectReader pr(top.Has("problem") ? j.at("problem") : kEmpty, "problem");
  const ObjectReader ar(top.Has("algorithm") ? j.at("algorithm") : kEmpty, "algorithm");
  const ObjectReader sr(top.Has("schedule") ? j.at("schedule") : kEmpty, "schedule");
  pr.CollectUnknown({"mode", "dtype", "head_dim", "num_q_heads", "num_kv_heads", "kv_layout",
                     "page_size", "window", "queries"}, &unknown);
  ar.CollectUnknown({"probe", "affine"}, &unknown);
  sr.CollectUnknown({"path", "block_n", "warps", "stages", "splits", "heads_per_cta", "block_m",
                     "fused_merge", "pingpong", "persistent", "test_fault", "dq_reduce"}, &unknown);
  if (!unknown.empty())
    return JsonError(absl::StrCat(unknown.size() == 1 ? "unknown field " : "unknown fields ",
                                  absl::StrJoin(unknown, ", ")));

  std::string key, hash;
  int generator_version = 0;
  PLX_RETURN_IF_ERROR(top.String("key", false, &key));
  PLX_RETURN_IF_ERROR(top.String("hash", false, &hash));
  PLX_RETURN_IF_ERROR(top.Int("generator_version", false, &generator_version));

  std::optional<Variant> v;
  if (top.Has("key")) {
    absl::StatusOr<Variant> parsed = Variant::Parse(key, o);
    if (!parsed.ok()) return JsonError(parsed.status().message());
    v = *std::move(parsed);
  }
  if (structured) {
    Problem p;
    Algorithm a;
    Schedule s;
    PLX_RETURN_IF_ERROR(ReadProblem(pr, &p));
    PLX_RETURN_IF_ERROR(ReadAlgorithm(ar, &a));
    PLX_RETURN_IF_ERROR(ReadSchedule(sr, p, a, o, &s));
    absl::StatusOr<Variant> built = Variant::Create(p, a, s);
    if (!built.ok()) return JsonError(built.status().message());
    if (v.has_value() && built->Key() != v->Key())
      return JsonError(absl::StrCat("key '", key, "' does not match the structured fields, which give '",
                                    built->Key(), "'"));
    v = *std::move(built);
  }
  if (top.Has("hash") && hash != v->HashHex())
    return JsonError(absl::StrCat("hash: '", hash, "' does not match the key's hash ", v->HashHex()));
  return *std::move(v);
}

#undef PLX_RETURN_IF_ERROR

}  // namespace parallax
