#include "job_records.h"

#include <algorithm>
#include <mutex>
#include <set>

#include <google/protobuf/util/json_util.h>
#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "parallax/service/json_read.h"
#include "parallax/service/validate.h"

namespace parallax::service {
namespace {

namespace pbu = google::protobuf::util;

nlohmann::json ToJson(const google::protobuf::Message& m) {
  std::string text;
  pbu::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  if (!pbu::MessageToJsonString(m, &text, options).ok()) return nlohmann::json::object();
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  return j.is_discarded() ? nlohmann::json::object() : j;
}

bool FromJson(const nlohmann::json& j, google::protobuf::Message* m) {
  pbu::JsonParseOptions options;
  options.ignore_unknown_fields = true;  // rows written by newer builds
  return pbu::JsonStringToMessage(SafeDump(j), m, options).ok();
}

absl::Status Unreadable(absl::string_view what) {
  return absl::FailedPreconditionError(absl::StrCat("stored parameters unreadable: ", what));
}

std::string ProgressDamage(const nlohmann::json& progress, v1::JobProgress* p) {
  if (!progress.is_object())
    return absl::StrCat("progress_json: not a JSON object (found ", progress.type_name(), ")");
  if (!FromJson(progress, p)) {
    p->Clear();
    return "progress_json: not a JobProgress";
  }
  return "";
}

// A damaged row is listed on every ListJobs; its log line is written once per process.
void LogDamageOnce(int64_t run_id, const std::string& damage) {
  static std::mutex mu;
  static std::set<int64_t>* logged = new std::set<int64_t>();
  {
    std::lock_guard lock(mu);
    if (logged->size() >= 100000 || !logged->insert(run_id).second) return;
  }
  spdlog::warn("job {}: stored record damaged ({}); listed with its status column only", run_id, damage);
}

}  // namespace

nlohmann::json ParamsJson(const JobSpec& spec, int requested_ordinal) {
  nlohmann::json problems = nlohmann::json::array();
  for (const ProblemSpec& p : spec.problems) problems.push_back(ToJson(ToProto(p)));
  return {{"problems", problems},
          {"budget_seconds", spec.budget_seconds},
          {"strategy", ToString(spec.strategy)},
          {"requested_device", requested_ordinal},
          {"device_ordinal", spec.device_ordinal},
          {"device_fingerprint", spec.device_fingerprint},
          {"resumed_from_job_id", spec.resumed_from_job_id}};
}

std::string ParamsDamage(const nlohmann::json& params) {
  if (!params.is_object()) return absl::StrCat("params_json: not a JSON object (found ", params.type_name(), ")");
  std::vector<std::string> wrong = {
      JsonTypeProblem<double>(params, "budget_seconds", "a number"),
      JsonTypeProblem<std::string>(params, "strategy", "a string"),
      JsonTypeProblem<int>(params, "requested_device", "an integer"),
      JsonTypeProblem<int>(params, "device_ordinal", "an integer"),
      JsonTypeProblem<std::string>(params, "device_fingerprint", "a string"),
      JsonTypeProblem<int64_t>(params, "resumed_from_job_id", "an integer")};
  nlohmann::json problems;
  if (ReadJson(params, "problems", &problems) == JsonField::kOk && !problems.is_array())
    wrong.push_back(absl::StrCat("problems: expected an array, found ", problems.type_name()));
  wrong.erase(std::remove(wrong.begin(), wrong.end(), std::string()), wrong.end());
  if (wrong.empty()) return "";
  return absl::StrCat("params_json: ", absl::StrJoin(wrong, "; "));
}

absl::StatusOr<JobSpec> SpecFromParams(const nlohmann::json& params, const ServiceLimits& limits,
                                       int* requested_ordinal) {
  if (std::string damage = ParamsDamage(params); !damage.empty()) return Unreadable(damage);
  v1::SubmitTuningRequest r;
  nlohmann::json problems = nlohmann::json::array();
  ReadJson(params, "problems", &problems);
  for (size_t i = 0; i < problems.size(); ++i)
    if (!FromJson(problems[i], r.add_problems())) return Unreadable(absl::StrCat("problems[", i, "]: not a Problem"));
  r.set_budget_seconds(JsonOr(params, "budget_seconds", 0.0));
  const std::string strategy = JsonOr<std::string>(params, "strategy", "guided");
  r.set_strategy(strategy == "random"       ? v1::STRATEGY_RANDOM
                 : strategy == "exhaustive" ? v1::STRATEGY_EXHAUSTIVE
                                            : v1::STRATEGY_GUIDED);
  *requested_ordinal = JsonOr(params, "requested_device", -1);
  if (*requested_ordinal >= 0) r.set_device_ordinal(*requested_ordinal);
  absl::StatusOr<JobSpec> spec = ValidateSubmit(r, limits);
  if (!spec.ok())
    return absl::FailedPreconditionError(absl::StrCat("stored job no longer valid: ", spec.status().message()));
  return spec;
}

nlohmann::json ProgressJson(const v1::JobProgress& progress) { return ToJson(progress); }

v1::JobProgress ProgressFromRun(const cache::RunInfo& run) {
  v1::JobProgress p;
  std::string damage = ProgressDamage(run.progress, &p);
  const std::string params_damage = ParamsDamage(run.params);
  if (!params_damage.empty()) damage = damage.empty() ? params_damage : absl::StrCat(params_damage, "; ", damage);
  p.set_job_id(run.id);
  p.set_started_at_unix_ms(run.started_at);
  p.set_finished_at_unix_ms(run.finished_at.value_or(0));
  if (p.device_fingerprint().empty()) p.set_device_fingerprint(JsonOr<std::string>(run.params, "device_fingerprint", ""));
  p.set_resumed_from_job_id(JsonOr<int64_t>(run.params, "resumed_from_job_id", 0));
  switch (run.status) {
    case cache::RunStatus::kRunning:
      if (p.state() != v1::JOB_STATE_RUNNING) p.set_state(v1::JOB_STATE_QUEUED);
      break;
    case cache::RunStatus::kDone: p.set_state(v1::JOB_STATE_DONE); break;
    case cache::RunStatus::kFailed: p.set_state(v1::JOB_STATE_FAILED); break;
    case cache::RunStatus::kCancelled: p.set_state(v1::JOB_STATE_CANCELLED); break;
    case cache::RunStatus::kInterrupted:
      // Marked on startup after a crash or stop: the stored progress still says running.
      if (p.state() != v1::JOB_STATE_INTERRUPTED)
        p.set_message(absl::StrCat("interrupted by a server restart; resume with resume_job_id=", run.id));
      p.set_state(v1::JOB_STATE_INTERRUPTED);
      break;
  }
  if (!damage.empty()) {
    LogDamageOnce(run.id, damage);
    p.set_message(absl::StrCat("stored record damaged (", damage, ")",
                               params_damage.empty() ? "" : "; it cannot be resumed"));
  }
  return p;
}

bool IsTerminal(v1::JobState s) {
  return s == v1::JOB_STATE_DONE || s == v1::JOB_STATE_FAILED || s == v1::JOB_STATE_CANCELLED ||
         s == v1::JOB_STATE_INTERRUPTED;
}

cache::RunStatus RunStatusOf(v1::JobState s) {
  switch (s) {
    case v1::JOB_STATE_DONE: return cache::RunStatus::kDone;
    case v1::JOB_STATE_CANCELLED: return cache::RunStatus::kCancelled;
    case v1::JOB_STATE_INTERRUPTED: return cache::RunStatus::kInterrupted;
    default: return cache::RunStatus::kFailed;
  }
}

}  // namespace parallax::service
