// Search strategies over one (problem, bucket): which candidates to time, in which order and
// with how many repetitions. They only see a Measurer, so tests drive them with recorded
// times and a fake clock, and the tuner with the isolated GPU worker.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "parallax/codegen/variant.h"
#include "parallax/search/clock.h"
#include "parallax/search/outcome.h"

namespace parallax::search {

struct Candidate {
  Variant variant;
  double est_us = 0;  // cost-model estimate (guided ordering)
};

class Measurer {
 public:
  virtual ~Measurer() = default;
  // Times v with at least `reps` samples. May answer from earlier results (Outcome::cached)
  // when they have as many samples, or are a failure that repeating would not change.
  virtual Outcome Measure(const Variant& v, int reps) = 0;
};

enum class StrategyKind { kGuided, kExhaustive, kRandom };
const char* ToString(StrategyKind k);
absl::StatusOr<StrategyKind> ParseStrategy(absl::string_view name);

// Samples per candidate in successive-halving rounds; exhaustive and random use `full`.
struct RepsPlan {
  int few = 3;
  int mid = 8;
  int full = 20;
};

struct StrategyOptions {
  StrategyKind kind = StrategyKind::kGuided;
  uint64_t seed = 1;
  RepsPlan reps;
  double random_fraction = 0.25;  // random: share of the candidates sampled
  double guided_fraction = 0.15;  // guided: first-round share, best by the cost model
  int guided_min_pool = 8;        // guided: first-round size floor for small spaces
  int finalists = 3;              // guided: candidates timed with full reps
  // Measured first by guided and random (warm start from a tuned neighbour bucket, and the
  // runtime's default so the result is never worse than what an untuned call gets).
  std::vector<std::string> seeds;
  // Guided: timed with full samples next to the finalists (the runtime's default), so the
  // pick is judged against it at equal samples and a tuned config never loses to it by noise
  // of a few-sample first look.
  std::string baseline;
};

struct Trial {
  std::string key;
  Outcome outcome;
};

struct StrategyResult {
  std::vector<Trial> trials;      // every Measure() answer, in order
  int distinct_measured = 0;      // candidates with at least one non-pruned answer
  std::optional<Trial> best;      // PickBest(trials)
  bool budget_exhausted = false;  // stopped early by the clock
  bool cancelled = false;         // stopped early by the cancel flag
};

// Runs `o.kind`. Stops between measurements when the budget is spent, keeping what it has.
StrategyResult RunStrategy(const std::vector<Candidate>& candidates, Measurer& m, const Budget& budget,
                           const StrategyOptions& o);

// How many measurements the strategy expects to make over n candidates (for ETAs).
int PlannedMeasurements(const StrategyOptions& o, size_t n);

// The winner among trials: each key is judged by its answer with the most samples (the
// latest on ties); among the 'ok' ones at the highest sample count any key reached, the
// lowest median wins. Racing thus only crowns candidates that survived to the last round.
std::optional<Trial> PickBest(const std::vector<Trial>& trials);

// Keys of candidates whose schedules differ from v's in exactly one field (local search).
std::vector<size_t> Neighbours(const std::vector<Candidate>& candidates, size_t of);

}  // namespace parallax::search
