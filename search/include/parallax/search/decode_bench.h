// Timing and checking decode candidates on the GPU in this process (the worker's engine, and
// `parallax bench decode`).
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

#include <cuda.h>

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "parallax/codegen/variant.h"
#include "parallax/runtime/runtime.h"

namespace parallax::search {

struct BenchShape {
  Problem problem;
  Algorithm algorithm;
  int batch = 1;
  int seqlen = 1024;
};

struct BenchOptions {
  double l2_factor = 2.0;      // rotate input sets until they exceed this many L2 sizes
  int max_sets = 64;
  double mem_fraction = 0.6;   // of device memory, for all input sets together
  double min_sample_us = 200;  // graph replays per sample until a sample lasts this long
  int warmup = 3;              // eager launches per set before capturing
  uint64_t seed = 1;
  bool reduced_check = true;   // (a)
  std::string reference_key;   // (b): full-shape reference variant; "" skips (b)
  double full_tolerance = 1e-2;
};

struct VerifyResult {
  bool ok = false;
  double reduced_rel = 0;   // (a) relative Frobenius error vs float64
  double reduced_tol = 0;
  double full_rel = 0;      // (b) vs the reference variant (0 when skipped)
  long masked_rows = 0;     // prefill, amplified: ill-conditioned rows left out of reduced_rel
  std::string error;        // why not ok
};

struct Timing {
  double median_us = 0, min_us = 0, max_us = 0;
  int reps = 0;
  int num_splits = 0;
  std::string variant;  // the key that ran (the runtime's choice when none was given)
  std::string choice;   // explicit / exact / nearest / default
};

// Split-KV workspace bound, and the number of input sets that fit; shared with the tuner so
// it can size its watchdog like the worker sizes its inputs.
int InputSetsFor(double set_bytes, double l2_bytes, double mem_bytes, const BenchOptions& o);
double InputSetBytes(const BenchShape& s);

class DecodeBench {
 public:
  // Allocates and fills the input sets on rt's device, computes the reduced-shape float64
  // reference and, with reference_key, the full-shape reference output.
  static absl::StatusOr<std::unique_ptr<DecodeBench>> Create(Runtime& rt, const BenchShape& s,
                                                             const BenchOptions& o);
  ~DecodeBench();
  DecodeBench(const DecodeBench&) = delete;
  DecodeBench& operator=(const DecodeBench&) = delete;

  // (a) and (b). A non-OK status is a CUDA error: the context may be unusable.
  absl::StatusOr<VerifyResult> Verify(const Variant& v);
  // Graph-replay timing; key "" lets the runtime choose (tuned or default).
  absl::StatusOr<Timing> Time(const std::string& key, int reps);
  // Of v itself: the worker times test-only variants this way (no key path accepts them).
  absl::StatusOr<Timing> Time(const Variant& v, int reps);

  int num_sets() const;
  double bytes_per_launch() const;  // K/V/q/r read + out written
  nlohmann::json Info() const;

 private:
  struct State;
  explicit DecodeBench(std::unique_ptr<State> s);
  std::unique_ptr<State> s_;
};

}  // namespace parallax::search
