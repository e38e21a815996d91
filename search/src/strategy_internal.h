// Bookkeeping shared by the strategies: one measurement at a time against the budget.
#pragma once

#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "parallax/search/strategy.h"

namespace parallax::search::internal {

class Session {
 public:
  Session(Measurer& m, const Budget& b, StrategyResult& r) : m_(m), budget_(b), r_(r) {}

  // Measures c with `reps` samples and records the answer. False (nothing recorded) once the
  // budget is spent or the run was cancelled: the strategy then stops.
  bool Measure(const Candidate& c, int reps);
  bool Tried(const std::string& key) const { return latest_.count(key) > 0; }
  // The answer with the most samples per key (the latest on ties).
  const std::map<std::string, Outcome>& latest() const { return latest_; }
  // Keys whose judged answer is 'ok', fastest first.
  std::vector<std::string> RankedOk() const;

 private:
  Measurer& m_;
  const Budget& budget_;
  StrategyResult& r_;
  std::map<std::string, Outcome> latest_;
};

// Fisher-Yates with the engine's raw output, so a seed gives the same order with any
// standard library (std::shuffle's algorithm is unspecified).
void SeededShuffle(std::vector<size_t>& v, uint64_t seed);

StrategyResult RunGuided(const std::vector<Candidate>& c, Measurer& m, const Budget& b, const StrategyOptions& o);

}  // namespace parallax::search::internal
