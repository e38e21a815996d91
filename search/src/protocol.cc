#include "parallax/search/protocol.h"

#include "absl/strings/str_cat.h"

namespace parallax::search {
namespace {

using nlohmann::json;

const char* OpName(Op op) {
  switch (op) {
    case Op::kPrepare: return "prepare";
    case Op::kMeasure: return "measure";
    case Op::kQuit: return "quit";
  }
  return "?";
}

absl::StatusOr<json> ParseObject(absl::string_view line) {
  json j = json::parse(line.begin(), line.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object())
    return absl::InvalidArgumentError(absl::StrCat("not a JSON object: '", line.substr(0, 200), "'"));
  return j;
}

// Reads an optional field of the expected JSON type; a present field of another type is an
// error naming it.
template <typename T>
absl::Status Get(const json& j, const char* name, T* out, bool required = false) {
  auto it = j.find(name);
  if (it == j.end() || it->is_null()) {
    return required ? absl::InvalidArgumentError(absl::StrCat("missing field '", name, "'")) : absl::OkStatus();
  }
  bool ok = false;
  if constexpr (std::is_same_v<T, std::string>) ok = it->is_string();
  else if constexpr (std::is_same_v<T, bool>) ok = it->is_boolean();
  else if constexpr (std::is_floating_point_v<T>) ok = it->is_number();
  else ok = it->is_number_integer() || it->is_number_unsigned();
  if (!ok) return absl::InvalidArgumentError(absl::StrCat("field '", name, "' has the wrong type"));
  *out = it->get<T>();
  return absl::OkStatus();
}

#define PLX_RETURN_IF_ERROR(expr)              \
  do {                                         \
    if (absl::Status s_ = (expr); !s_.ok()) return s_; \
  } while (0)

}  // namespace

Outcome WorkerReply::ToOutcome() const {
  Outcome o;
  o.verdict = verdict;
  o.median_us = median_us;
  o.min_us = min_us;
  o.max_us = max_us;
  o.reps = reps;
  o.rel_error = rel_error;
  o.error = error;
  return o;
}

WorkerReply WorkerReply::From(int64_t id, const Outcome& o) {
  WorkerReply r;
  r.id = id;
  r.verdict = o.verdict;
  r.median_us = o.median_us;
  r.min_us = o.min_us;
  r.max_us = o.max_us;
  r.reps = o.reps;
  r.rel_error = o.rel_error;
  r.error = o.error;
  return r;
}

std::string Encode(const WorkerRequest& r) {
  json j = {{"op", OpName(r.op)}, {"id", r.id}};
  if (r.op == Op::kPrepare) {
    j["default_key"] = r.default_key;
    j["batch"] = r.batch;
    j["seqlen"] = r.seqlen;
    if (r.q_len > 0) j["q_len"] = r.q_len;  // prefill only: decode lines stay as they were
    j["seed"] = r.seed;
  } else if (r.op == Op::kMeasure) {
    j["key"] = r.key;
    j["reps"] = r.reps;
  }
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string Encode(const WorkerReply& r) {
  json j = {{"id", r.id}};
  if (r.is_event()) {
    j["event"] = r.event;
  } else {
    j["status"] = ToString(r.verdict);
    if (r.verdict == Verdict::kOk) {
      j["median_us"] = r.median_us;
      j["min_us"] = r.min_us;
      j["max_us"] = r.max_us;
      j["reps"] = r.reps;
    }
    if (r.rel_error) j["rel_error"] = *r.rel_error;
    if (!r.error.empty()) j["error"] = r.error;
    if (r.fatal) j["fatal"] = true;
  }
  if (!r.info.empty()) j["info"] = r.info;
  // Worker error texts may carry bytes from a crashed kernel's printf; never fail on them.
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

absl::StatusOr<WorkerRequest> DecodeRequest(absl::string_view line) {
  absl::StatusOr<json> j = ParseObject(line);
  if (!j.ok()) return j.status();
  WorkerRequest r;
  std::string op;
  PLX_RETURN_IF_ERROR(Get(*j, "op", &op, true));
  PLX_RETURN_IF_ERROR(Get(*j, "id", &r.id));
  if (op == "prepare") {
    r.op = Op::kPrepare;
    PLX_RETURN_IF_ERROR(Get(*j, "default_key", &r.default_key, true));
    PLX_RETURN_IF_ERROR(Get(*j, "batch", &r.batch, true));
    PLX_RETURN_IF_ERROR(Get(*j, "seqlen", &r.seqlen, true));
    PLX_RETURN_IF_ERROR(Get(*j, "q_len", &r.q_len));
    PLX_RETURN_IF_ERROR(Get(*j, "seed", &r.seed));
    if (r.batch < 1 || r.seqlen < 1) return absl::InvalidArgumentError("batch and seqlen must be >= 1");
    if (r.q_len < 0 || r.q_len > r.seqlen)
      return absl::InvalidArgumentError(absl::StrCat("q_len=", r.q_len, ": must be in 0..seqlen (0: decode)"));
  } else if (op == "measure") {
    r.op = Op::kMeasure;
    PLX_RETURN_IF_ERROR(Get(*j, "key", &r.key, true));
    PLX_RETURN_IF_ERROR(Get(*j, "reps", &r.reps, true));
    if (r.reps < 1) return absl::InvalidArgumentError("reps must be >= 1");
  } else if (op == "quit") {
    r.op = Op::kQuit;
  } else {
    return absl::InvalidArgumentError(absl::StrCat("unknown op '", op, "'"));
  }
  return r;
}

absl::StatusOr<WorkerReply> DecodeReply(absl::string_view line) {
  absl::StatusOr<json> j = ParseObject(line);
  if (!j.ok()) return j.status();
  WorkerReply r;
  PLX_RETURN_IF_ERROR(Get(*j, "id", &r.id, true));
  PLX_RETURN_IF_ERROR(Get(*j, "event", &r.event));
  if (auto it = j->find("info"); it != j->end() && it->is_object()) r.info = *it;
  if (r.is_event()) return r;
  std::string status;
  PLX_RETURN_IF_ERROR(Get(*j, "status", &status, true));
  absl::StatusOr<Verdict> v = ParseVerdict(status);
  if (!v.ok()) return v.status();
  r.verdict = *v;
  const bool ok = r.verdict == Verdict::kOk;
  PLX_RETURN_IF_ERROR(Get(*j, "median_us", &r.median_us, ok));
  PLX_RETURN_IF_ERROR(Get(*j, "min_us", &r.min_us));
  PLX_RETURN_IF_ERROR(Get(*j, "max_us", &r.max_us));
  PLX_RETURN_IF_ERROR(Get(*j, "reps", &r.reps));
  double rel = 0;
  if (j->contains("rel_error")) {
    PLX_RETURN_IF_ERROR(Get(*j, "rel_error", &rel));
    r.rel_error = rel;
  }
  PLX_RETURN_IF_ERROR(Get(*j, "error", &r.error));
  PLX_RETURN_IF_ERROR(Get(*j, "fatal", &r.fatal));
  return r;
}

}  // namespace parallax::search
