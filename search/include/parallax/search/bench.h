// What every kernel family's in-process bench shares (DecodeBench, PrefillBench): the options,
// the result of the correctness check, a timing, how many rotating input sets a shape gets,
// and the Bench base class with the checks and timing (search/src/bench_harness.h runs them).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "parallax/codegen/variant.h"

namespace parallax::search {
namespace internal {
class BenchHarness;
}  // namespace internal

struct BenchOptions {
  double l2_factor = 2.0;      // rotate input sets until they exceed this many L2 sizes
  int max_sets = 64;
  double mem_fraction = 0.6;   // of device memory, for all input sets together
  double min_sample_us = 200;  // graph replays per sample until a sample lasts this long
  int warmup = 3;              // eager launches per set before capturing
  uint64_t seed = 1;
  bool reduced_check = true;   // (a) the reduced shape against the float64 reference
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
  int num_splits = 0;   // decode's split-KV count; 0 for families without one
  std::string variant;  // the key that ran (the runtime's choice when none was given)
  std::string choice;   // explicit / exact / nearest / default
};

// The number of input sets that fit: enough to exceed l2_factor x L2 between two launches on
// one set (at most max_sets), within mem_fraction of mem_bytes. Shared with the tuner so it
// can size its watchdog like the worker sizes its inputs.
int InputSetsFor(double set_bytes, double l2_bytes, double mem_bytes, const BenchOptions& o);

// The sliding window the tuner's benches use for a problem with one compiled in (its size is
// a launch argument, not part of the bucket): half of the keys per sequence; 0 without.
int BenchWindow(const Problem& p, int seqlen_k);

// A family's bench once its inputs are made (DecodeBench::Create, PrefillBench::Create).
class Bench {
 public:
  virtual ~Bench();
  Bench(const Bench&) = delete;
  Bench& operator=(const Bench&) = delete;

  // (a) and, with BenchOptions::reference_key, (b). A non-OK status is a CUDA error: the
  // context may be unusable.
  absl::StatusOr<VerifyResult> Verify(const Variant& v);
  // Graph-replay timing; key "" lets the runtime choose (tuned or default).
  absl::StatusOr<Timing> Time(const std::string& key, int reps);
  // Of v itself: the worker times test-only variants this way (no key path accepts them).
  absl::StatusOr<Timing> Time(const Variant& v, int reps);

  int num_sets() const;
  // sets, set_bytes, l2_bytes, reduced (the reduced shape's name), masked_rows (families that
  // mask rows), full_reference, and the family's own (bytes_per_launch, flops_per_launch).
  nlohmann::json Info() const;

 protected:
  explicit Bench(std::unique_ptr<internal::BenchHarness> h);

 private:
  std::unique_ptr<internal::BenchHarness> h_;
};

}  // namespace parallax::search
