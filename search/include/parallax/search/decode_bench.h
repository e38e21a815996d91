// Timing and checking decode candidates on the GPU in this process (the worker's engine, and
// `parallax bench decode`). Sets, checks and timing are the harness every family shares
// (search/src/bench_harness.h); this bench supplies decode's inputs and launch.
//
// Inputs are made like tests/runtime/gpu_harness: q, r, k RMS-normalised, v random, paged
// over shuffled pages when the problem is paged. Several input sets are rotated so that the
// bytes touched between two launches of the same set exceed l2_factor x the L2 cache (a decode
// kernel reading K/V from L2 would look faster than it runs in a model), unless memory does
// not allow. A time is the median over `reps` samples of CUDA-graph replays (each sample
// long enough to swamp event resolution), per launch.
// Verification, before a time counts: (a) a reduced shape (batch <= 2, seqlen <= 2048, ragged
// lengths) against the float64 reference within the spec's tolerance, and (b) the full
// shape against a reference variant's output (the runtime's default), rel. Frobenius <= 1e-2.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "parallax/codegen/variant.h"
#include "parallax/runtime/runtime.h"
#include "parallax/search/bench.h"  // Bench, BenchOptions, VerifyResult, Timing, InputSetsFor

namespace parallax::search {

struct BenchShape {
  Problem problem;
  Algorithm algorithm;
  int batch = 1;
  int seqlen = 1024;
};

// Bytes of one input set (q, r, K, V; paged: whole pages); the tuner sizes its watchdog by it.
double InputSetBytes(const BenchShape& s);

class DecodeBench : public Bench {
 public:
  // Allocates and fills the input sets on rt's device, computes the reduced-shape float64
  // reference and, with reference_key, the full-shape reference output.
  static absl::StatusOr<std::unique_ptr<DecodeBench>> Create(Runtime& rt, const BenchShape& s,
                                                             const BenchOptions& o);

  double bytes_per_launch() const;  // K/V/q/r read + out written

 private:
  DecodeBench(const BenchShape& s, std::unique_ptr<internal::BenchHarness> h);
  BenchShape shape_;
};

}  // namespace parallax::search
