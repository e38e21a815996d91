// How a job lives in the cache's tuning_runs table: params_json holds the normalized request
// (so a job can be resumed from its row alone) and progress_json the proto JSON of its last
// JobProgress. The row's status column is authoritative for terminal states; while it is
// 'running', progress_json's state tells queued from running.
#pragma once

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "parallax/cache/rows.h"
#include "parallax/service/limits.h"
#include "parallax/service/tuning_backend.h"
#include "parallax/v1/tuner.pb.h"

namespace parallax::service {

// `requested_ordinal`: what the client asked for (-1: any device).
nlohmann::json ParamsJson(const JobSpec& spec, int requested_ordinal);
// The job's problems, budget, strategy and requested device from a row's params; revalidated
// like a fresh request. `requested_ordinal` receives -1 for "any". FAILED_PRECONDITION when the
// row is damaged or no longer valid, saying which.
absl::StatusOr<JobSpec> SpecFromParams(const nlohmann::json& params, const ServiceLimits& limits,
                                       int* requested_ordinal);
// "" when a row's params have the shape ParamsJson writes (fields may be missing); otherwise
// what is wrong, e.g. "params_json: not a JSON object (found array)".
std::string ParamsDamage(const nlohmann::json& params);

nlohmann::json ProgressJson(const v1::JobProgress& progress);
// Never fails: a damaged row (see ParamsDamage; progress_json likewise) still lists, in the
// state of its status column, with a message naming the damage instead of its own, and is
// logged once per process.
v1::JobProgress ProgressFromRun(const cache::RunInfo& run);

bool IsTerminal(v1::JobState state);
cache::RunStatus RunStatusOf(v1::JobState terminal_state);

}  // namespace parallax::service
