// Recorded-style measurement tables for the strategy tests: every candidate of a real
// search space with a time, so strategies can be compared with no GPU.
//
// No H100 recording exists yet, so the times come from a simulated GPU that is deliberately
// NOT the tuner's cost model: it has register-limited occupancy, pipeline-depth and warp
// effects, a fused-merge saving and a per-variant "unmodelled" factor of up to +-8%. A
// strategy can therefore only do well by measuring, not by trusting the model.
//
// Two GPU models are simulated (warm start across models): the H100 and an H200, which has
// the same SMs and limits (so the same space) but 1.4x the bandwidth, so it needs more bytes
// in flight to hide latency (deeper pipelines pay more), and half of its unmodelled factor is
// its own: configs good on one are mostly, not always, good on the other.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "parallax/codegen/bucket.h"
#include "parallax/search/clock.h"
#include "parallax/search/strategy.h"

namespace parallax::search::testing {

struct RecordedCase {
  std::string name;  // "h16x8-b1-l65536"
  ShapeBucket bucket;
  std::vector<Candidate> candidates;  // est_us from the tuner's cost model (H100 inputs)
  std::map<std::string, double> us;   // the "recorded" time of every candidate
  double best_us = 0;                 // min over us
};

struct SimGpu {
  std::string name;
  double bytes_per_us = 3.0e6;    // achieved DRAM bandwidth
  double inflight_bytes = 40e3;   // bytes in flight per SM that hide the memory latency
  uint64_t salt = 0;              // 0: the unmodelled factor is the key's alone
};
SimGpu SimH100();
SimGpu SimH200();

// Buckets of the qwen3 (h16x8) and llama3-8b (h32x8) decode problems over the tuner's
// default space (split counts 0..32, fused twins), timed on `gpu` (est_us from the tuner's
// cost model for that GPU's fake DeviceInfo).
std::vector<RecordedCase> RecordedCases(const SimGpu& gpu = SimH100());

// Answers from a table; each answer advances a fake clock by `cost_s`.
class TableMeasurer final : public Measurer {
 public:
  TableMeasurer(const std::map<std::string, double>& us, FakeClock* clock, double cost_s = 0.1)
      : us_(us), clock_(clock), cost_s_(cost_s) {}
  Outcome Measure(const Variant& v, int reps) override;

  int calls() const { return calls_; }
  const std::set<std::string>& distinct() const { return distinct_; }
  const std::vector<std::string>& order() const { return order_; }

 private:
  const std::map<std::string, double>& us_;
  FakeClock* clock_;
  double cost_s_;
  int calls_ = 0;
  std::set<std::string> distinct_;
  std::vector<std::string> order_;
};

}  // namespace parallax::search::testing
