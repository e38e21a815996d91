// CUDA-graph-replay timing for the in-process benches (bench_harness.h): one pass over the
// rotating input sets captured once, replayed until a sample swamps event resolution.
#pragma once

#include <cuda.h>

#include <functional>
#include <vector>

#include "absl/status/statusor.h"

namespace parallax::search::internal {

struct SampleStats {
  double median_us = 0, min_us = 0, max_us = 0;
};
double Median(const std::vector<double>& sorted);

// Times `pass`, which enqueues `launches` kernel launches (one per input set) on `stream`:
// `warmup` eager passes first (they compile/load kernels and size workspaces, none of which
// may happen during capture), then one pass captured into a CUDA graph whose replays are
// timed with events. Replays per sample are calibrated so that a sample lasts at least
// min_sample_us; one warm sample is dropped, then `reps` samples give per-launch times.
absl::StatusOr<SampleStats> TimeGraph(CUstream stream, const std::function<absl::Status(CUstream)>& pass,
                                      int launches, int warmup, double min_sample_us, int reps);

}  // namespace parallax::search::internal
