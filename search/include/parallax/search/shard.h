// Sharding a tune (`parallax tune --shard I/N`): the run's units of work (its shape buckets,
// in the order an unsharded run takes them) each get an expected cost, and a deterministic
// balanced rule gives every unit to exactly one of N shards. Every machine computes the same
// plan from the same request and space options: the cost is taken on a reference GPU, never
// on the devices in hand. Each shard tunes its buckets into its own database; `db import`
// merges them.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "parallax/codegen/bucket.h"
#include "parallax/search/pruning.h"
#include "parallax/search/tuner.h"

namespace parallax::search {

// Shard `index` of `count`, 1-based: 1/1 is the whole run.
struct ShardSpec {
  int index = 1;
  int count = 1;
};
std::string ToString(const ShardSpec& s);  // "2/4"

// Largest N accepted by ParseShard.
inline constexpr int kMaxShards = 4096;

// "I/N" with decimal digits only and 1 <= I <= N <= kMaxShards; InvalidArgument naming
// --shard otherwise.
absl::StatusOr<ShardSpec> ParseShard(absl::string_view text);

struct WorkUnit {
  int order = 0;        // 0-based position in the unsharded run's bucket order
  ShapeBucket bucket;
  std::string key;      // ToString(bucket): "b8-l4096", "t4096-l8192"
  int candidates = 0;   // static space on the reference GPU
  double cost_s = 0;    // expected seconds (ExpectedUnitSeconds)
  int shard = 1;        // 1-based
};

struct ShardPlan {
  int count = 1;
  std::vector<WorkUnit> units;  // unsharded order
  std::vector<double> load_s;   // expected seconds per shard, [0] is shard 1
};

// Expected seconds of tuning one bucket: `candidates` measurements, each the tuner's own
// estimate of a measurement (the watchdog's: 3 verification launches, warm-up, reps.full + 2
// samples of at least BenchOptions::min_sample_us, plus 0.05 s of round trip) of the runtime's
// portable default variant at the bucket's shape on the reference GPU (CostInputs{}, an
// H100-like sm_90). Only good for balancing shards, not as a wall-clock promise.
double ExpectedUnitSeconds(const TuneRequest& req, const ShapeBucket& b, int candidates);

// The order one run hands its units to its GPUs: expected cost descending (ties: request
// order). Each free GPU takes the next, so the longest buckets start first and the run does
// not end on one GPU still measuring the biggest bucket while the others idle (list
// scheduling, longest first: within 4/3 of the best split, and never later than the
// longest unit once it is over the mean load). The same on every machine: costed on the
// reference GPU, like the shard plan.
std::vector<size_t> LongestFirst(const TuneRequest& req);

// The units of `req`, costed, given to `count` shards: by cost descending (ties: unit key,
// then order), each to the least-loaded shard so far (ties: the lowest index). Every unit lands
// in exactly one shard, and no shard's load exceeds the mean load plus the largest unit.
// `space`: the tune's space options (the candidate count on the reference GPU). count >= 1.
ShardPlan PlanShards(const TuneRequest& req, const TuneSpaceOptions& space, int count);

// req with only shard s's buckets, in the unsharded order (empty when the shard has none).
TuneRequest ShardRequest(const TuneRequest& req, const ShardPlan& plan, int index);

}  // namespace parallax::search
