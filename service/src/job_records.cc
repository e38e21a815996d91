#include "job_records.h"

#include <google/protobuf/util/json_util.h>

#include "absl/strings/str_cat.h"
#include "parallax/service/validate.h"

namespace parallax::service {
namespace {

namespace pbu = google::protobuf::util;

nlohmann::json ToJson(const google::protobuf::Message& m) {
  std::string text;
  pbu::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  if (!pbu::MessageToJsonString(m, &text, options).ok()) return nlohmann::json::object();
  return nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
}

bool FromJson(const nlohmann::json& j, google::protobuf::Message* m) {
  pbu::JsonParseOptions options;
  options.ignore_unknown_fields = true;  // rows written by newer builds
  return pbu::JsonStringToMessage(j.dump(), m, options).ok();
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

absl::StatusOr<JobSpec> SpecFromParams(const nlohmann::json& params, const ServiceLimits& limits,
                                       int* requested_ordinal) {
  v1::SubmitTuningRequest r;
  const nlohmann::json problems = params.value("problems", nlohmann::json::array());
  if (!problems.is_array()) return absl::DataLossError("job params: problems is not an array");
  for (const nlohmann::json& p : problems)
    if (!FromJson(p, r.add_problems())) return absl::DataLossError("job params: unreadable problem");
  r.set_budget_seconds(params.value("budget_seconds", 0.0));
  const std::string strategy = params.value("strategy", std::string("guided"));
  r.set_strategy(strategy == "random"       ? v1::STRATEGY_RANDOM
                 : strategy == "exhaustive" ? v1::STRATEGY_EXHAUSTIVE
                                            : v1::STRATEGY_GUIDED);
  *requested_ordinal = params.value("requested_device", -1);
  if (*requested_ordinal >= 0) r.set_device_ordinal(*requested_ordinal);
  absl::StatusOr<JobSpec> spec = ValidateSubmit(r, limits);
  if (!spec.ok())
    return absl::FailedPreconditionError(absl::StrCat("stored job no longer valid: ", spec.status().message()));
  return spec;
}

nlohmann::json ProgressJson(const v1::JobProgress& progress) { return ToJson(progress); }

v1::JobProgress ProgressFromRun(const cache::RunInfo& run) {
  v1::JobProgress p;
  if (run.progress.is_object()) FromJson(run.progress, &p);
  p.set_job_id(run.id);
  p.set_started_at_unix_ms(run.started_at);
  p.set_finished_at_unix_ms(run.finished_at.value_or(0));
  if (p.device_fingerprint().empty())
    p.set_device_fingerprint(run.params.value("device_fingerprint", std::string()));
  p.set_resumed_from_job_id(run.params.value("resumed_from_job_id", int64_t{0}));
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
