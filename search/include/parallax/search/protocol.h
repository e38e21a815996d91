// The tuner <-> worker protocol: one JSON object per line, over the worker's stdin/stdout.
//
//   tuner:  {"op":"prepare","id":1,"default_key":"decode-...","batch":8,"seqlen":4096,"seed":1}
//           (prefill, bwd: "default_key":"prefill-..." / "bwd-...", "q_len": queries per
//           sequence, seqlen keys)
//   worker: {"id":1,"status":"ok","info":{"sets":3,...}}
//   tuner:  {"op":"measure","id":2,"key":"decode-...-testfault","reps":3}
//   worker: {"id":2,"event":"loaded"}                      (heartbeat: kernel loaded)
//   worker: {"id":2,"status":"failed","error":"CUDA_ERROR_ILLEGAL_ADDRESS ...","fatal":true}
//   tuner:  {"op":"quit","id":3}
// The worker says {"id":0,"event":"ready",...} once at start. A final answer carries
// "status"; an event does not. "fatal" means the worker exits next (its context is dead).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "parallax/search/outcome.h"

namespace parallax::search {

enum class Op { kPrepare, kMeasure, kQuit };

struct WorkerRequest {
  Op op = Op::kMeasure;
  int64_t id = 0;
  // prepare: the shape every later measure uses; default_key is the runtime's default
  // variant for the problem (it names the problem, and its output is the full-shape
  // reference every candidate is checked against).
  std::string default_key;
  int batch = 0;
  int seqlen = 0;  // keys per sequence
  int q_len = 0;   // prefill, bwd: queries per sequence, at the end of the seqlen keys; 0 for decode
  uint64_t seed = 1;
  // measure
  std::string key;
  int reps = 0;
};

struct WorkerReply {
  int64_t id = 0;
  std::string event;  // "ready", "loaded"; empty for a final answer
  Verdict verdict = Verdict::kFailed;
  double median_us = 0, min_us = 0, max_us = 0;
  int reps = 0;
  std::optional<double> rel_error;
  std::string error;
  bool fatal = false;
  nlohmann::json info = nlohmann::json::object();  // facts for logs (device, input sets)

  bool is_event() const { return !event.empty(); }
  Outcome ToOutcome() const;
  static WorkerReply From(int64_t id, const Outcome& o);
};

// One line each, without the trailing newline.
std::string Encode(const WorkerRequest& r);
std::string Encode(const WorkerReply& r);
// InvalidArgument naming what is wrong (not JSON, missing or mistyped field, unknown op).
absl::StatusOr<WorkerRequest> DecodeRequest(absl::string_view line);
absl::StatusOr<WorkerReply> DecodeReply(absl::string_view line);

}  // namespace parallax::search
