// The tuner's side of an isolated measuring worker, with a watchdog. A candidate that
// crashes the worker (a CUDA fault leaves its context unusable) or stops answering is
// reported as 'failed' / 'timeout' with what is known, the worker is killed, and the next
// call starts a fresh one (replaying the bucket's prepare), so tuning goes on.
#pragma once

#include <atomic>
#include <memory>
#include <optional>
#include <variant>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "parallax/search/outcome.h"
#include "parallax/search/protocol.h"
#include "parallax/search/subprocess.h"

namespace parallax::search {

struct WorkerOptions {
  std::vector<std::string> argv;   // the worker command, e.g. {"/usr/bin/parallax", "worker", "--device", "0"}
  double ready_timeout_s = 120;    // start-up: driver, context, helper kernels
  double prepare_timeout_s = 600;  // inputs and references for one bucket
  double min_timeout_s = 5;        // a measurement's patience is max(min, factor x expected)
  double timeout_factor = 20;
  const std::atomic<bool>* cancel = nullptr;  // Ctrl-C: stop waiting, kill the worker
};

class WorkerClient {
 public:
  explicit WorkerClient(WorkerOptions o) : o_(std::move(o)) {}
  ~WorkerClient() { Stop(); }

  // Starts the worker process (driver, context) if none is running, without preparing a
  // bucket: the tuner calls it while the reference variant still compiles. Optional.
  absl::Status Start();

  // Sets the bucket later measurements use; remembered and replayed after a restart. A
  // running worker is re-prepared in place (the process, its context and loaded kernels
  // stay). An error means the bucket cannot be measured at all (no GPU, shape too big, ...).
  absl::Status Prepare(const WorkerRequest& prepare);

  // Times `key`. An Outcome is the candidate's result, including 'failed' when it crashed
  // the worker and 'timeout' when it hung; a non-OK status means the worker itself is
  // unusable (cannot start or prepare), which says nothing about the candidate.
  absl::StatusOr<Outcome> Measure(const std::string& key, int reps, double expected_s);

  // The patience a measurement expected to take expected_s gets.
  double TimeoutFor(double expected_s) const;

  // Asks the worker to quit, kills it if it does not.
  void Stop();

  int starts() const { return starts_; }
  // Wall seconds spent starting processes (spawn to "ready") and in prepare requests.
  double start_seconds() const { return start_s_; }
  double prepare_seconds() const { return prepare_s_; }
  int restarts() const { return starts_ > 0 ? starts_ - 1 : 0; }
  const nlohmann::json& worker_info() const { return info_; }  // from its "ready" line

 private:
  absl::Status EnsureStarted();
  absl::Status SendPrepare();  // prepare_ to the running process
  // Sends r and waits for its final answer, extending the deadline on heartbeats. On
  // timeout, EOF or cancel the worker is killed and the returned Outcome says why.
  std::variant<WorkerReply, Outcome> Call(const WorkerRequest& r, double timeout_s);
  std::string DeathNote();  // exit status and the end of stderr, for error texts
  void Discard();           // kill and forget the current process

  WorkerOptions o_;
  std::unique_ptr<Subprocess> proc_;
  std::optional<WorkerRequest> prepare_;
  int64_t next_id_ = 1;
  int starts_ = 0;
  double start_s_ = 0, prepare_s_ = 0;
  nlohmann::json info_ = nlohmann::json::object();
};

}  // namespace parallax::search
