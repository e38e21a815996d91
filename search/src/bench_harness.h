// The bench/verify harness every kernel family's in-process bench is built on (DecodeBench,
// PrefillBench, and the next family's). It owns what must be the same for all of them:
//   - input sets: allocated and filled on the device, as many as make the bytes touched between
//     two launches on one set exceed l2_factor x L2 (within mem_fraction of device memory), and
//     rotated launch by launch, so that a kernel cannot look faster than it runs in a model;
//   - (a) the reduced-shape check: outputs poisoned, each run compared with the float64
//     reference (relative Frobenius error within the spec's tolerance for the dtype);
//   - (b) the full-shape check against a reference variant's output on input set 0;
//   - timing: the median over `reps` samples of CUDA-graph replays of one pass over the sets.
//
// A family supplies only how its inputs are made and how it launches (decode_bench.cc,
// prefill_bench.cc and backward_bench.cc are the three there are):
//
//   class HopperPrefillFamily final : public BenchFamily {   // holds its Runtime& and shape
//    public:
//     BenchLayout Layout() const override;        // bytes of one set, output size, labels
//     absl::Status MakeSet(SetMaker& m) override;  // set m.index(): m.Qrkv(...), then its
//                                                  // args (ProblemArgs, BindQrkv), kept
//     absl::StatusOr<ReducedCase> MakeReduced(DeviceArena& mem, uint64_t seed) override;
//                                                  // host inputs (RandomQrkv) uploaded, the
//                                                  // runs' args, the float64 reference
//     absl::StatusOr<Planned> Plan(const Pick& p, Target t) override;  // the runtime's plan
//                                                  // for t's args; Planned::run launches it
//     void AddInfo(nlohmann::json& j) const override;  // optional: its Info() fields
//   };
//
// and its public class, a parallax::search::Bench (bench.h) whose Create validates the shape:
//
//   class HopperPrefillBench : public Bench {
//    public:
//     static absl::StatusOr<std::unique_ptr<HopperPrefillBench>> Create(Runtime&, const Shape&,
//                                                                       const BenchOptions&);
//     // -> BenchHarness::Create(rt, std::make_unique<HopperPrefillFamily>(rt, shape), o)
//   };
#pragma once

#include <cuda.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "device_buffer.h"
#include "parallax/codegen/reference.h"
#include "parallax/codegen/variant.h"
#include "parallax/runtime/runtime.h"
#include "parallax/search/bench.h"

namespace parallax::search::internal {

class DeviceFill;

// What the harness needs to know of a family's shape before it makes anything.
struct BenchLayout {
  std::string name;         // "decode": in error messages
  std::string shape;        // "batch 2 x seqlen 4096": which shape did not fit in memory
  std::string full_name;    // "b2-l4096": the shape the full-shape check (b) reports
  DType dtype = DType::kBF16;  // of every input and output
  double set_bytes = 0;     // one input set
  size_t out_elems = 0;     // the output all sets share
  double reserved_bytes = 0;  // device memory kept from the sets' share (prefill: its output)
  double tolerance = 0;     // (a)'s bound; 0: the spec's for the dtype (the backward's is looser)
};

// Device memory that lives as long as the harness. `at` receives the allocation as the
// pointer type the family's arguments hold.
class DeviceArena {
 public:
  template <typename P>
  absl::Status Alloc(size_t bytes, P** at) {
    absl::StatusOr<void*> p = Alloc(bytes);
    if (!p.ok()) return p.status();
    *at = static_cast<P*>(*p);
    return absl::OkStatus();
  }
  template <typename P>
  absl::Status Upload(const void* src, size_t bytes, P** at) {
    absl::StatusOr<void*> p = Upload(src, bytes);
    if (!p.ok()) return p.status();
    *at = static_cast<P*>(*p);
    return absl::OkStatus();
  }
  absl::StatusOr<void*> Alloc(size_t bytes);
  absl::StatusOr<void*> Upload(const void* src, size_t bytes);

 private:
  std::vector<std::unique_ptr<DevBuf>> bufs_;
};

// The four inputs of an attention family on the device.
struct DeviceQrkv {
  void* q = nullptr;
  void* r = nullptr;
  void* k = nullptr;
  void* v = nullptr;
};

// A family's arguments (DecodeArgs, PrefillArgs, ...) for the problem's dtype and heads.
template <typename Args>
Args ProblemArgs(const Problem& p, int batch) {
  Args a;
  a.dtype = p.dtype;
  a.batch = batch;
  a.num_q_heads = p.num_q_heads;
  a.num_kv_heads = p.num_kv_heads;
  a.head_dim = p.head_dim;
  return a;
}

// Points a family's arguments (DecodeArgs, PrefillArgs, ...) at its inputs and output; r stays
// null for probe none (the runtime reads softmax from it).
template <typename Args>
void BindQrkv(Args& a, const DeviceQrkv& in, bool learned, void* out) {
  a.q = in.q;
  a.r = learned ? in.r : nullptr;
  a.k = in.k;
  a.v = in.v;
  a.out = out;
}

// What MakeSet gets for input set index(): memory, and model-like values written on the device
// (q, r, k rows RMS-normalised, v normal; see device_fill.h).
class SetMaker {
 public:
  SetMaker(DeviceArena& mem, DeviceFill& fill, CUstream stream, DType dtype, int index, uint64_t seed, void* out)
      : mem_(mem), fill_(fill), stream_(stream), dtype_(dtype), index_(index), seed_(seed), out_(out) {}
  int index() const { return index_; }
  uint64_t seed() const { return seed_; }  // this set's: tensors take seed() + 1, + 2, ...
  void* out() const { return out_; }       // what every set's launch writes
  DeviceArena& mem() { return mem_; }
  // The harness's stream, which the fills are queued on: a family that computes inputs from
  // inputs (the backward runs the forward for its statistics) queues that work after them.
  CUstream stream() const { return stream_; }
  // rows x d values, filled with seed.
  absl::StatusOr<void*> Rows(int64_t rows, int d, bool rms, uint64_t seed);
  // q and r (q_rows), k and v (kv_rows) with seeds seed() + 1 .. + 4; without r, r is a
  // placeholder of two bytes, not filled.
  absl::StatusOr<DeviceQrkv> Qrkv(int64_t q_rows, int64_t kv_rows, int d, bool with_r);

 private:
  DeviceArena& mem_;
  DeviceFill& fill_;
  CUstream stream_;
  DType dtype_;
  int index_;
  uint64_t seed_;
  void* out_;
};

// A slice of a run's output checked on its own, at the same offset in out and in want: a
// family with several outputs in one buffer (the backward's dq | dr | dk | dv) is held to the
// bound per output, so that a small gradient's error is not hidden by a large one's norm.
struct ReducedPart {
  std::string name;  // "dq": in messages
  size_t offset = 0;
  size_t elems = 0;
};

// One launch of the reduced check; its output is the first `elems` values of the reference,
// or, with parts, each part's slice (elems is then unused).
struct ReducedRun {
  size_t elems = 0;
  std::string what;  // "" or which path it takes ("varlen"), in messages
  std::vector<ReducedPart> parts;
};

// The reduced shape: inputs on the device (through the arena), the float64 reference.
struct ReducedCase {
  std::string name;              // "b2-l2048": in Info() and messages
  void* out = nullptr;           // every run writes here
  size_t out_elems = 0;          // poisoned before each run
  std::vector<ReducedRun> runs;  // Target{kReduced, i} is runs[i]
  std::vector<double> want;      // the reference, laid out like out
  int row = 0;                   // values per row of `masked`
  std::vector<char> masked;      // per row: left out of the error; empty: the family masks
                                 // nothing (and Info() has no masked_rows)
};

// The reduced sequences of a prefill-shaped bench (prefill, backward): batch <= 2, lengths cut
// to `max_len` (a chunk stays a chunk), a second ragged sequence, the window shortened so it
// still masks; `name` is ReducedCase::name's.
struct ReducedLengths {
  int batch = 1, lq = 0, lk = 0, window = 0;
  std::vector<int> lens_q, lens_k;
  std::string name;
};
ReducedLengths ReducedLengthsOf(int batch, int seqlen_q, int seqlen_k, int window, int max_len);

// Which kernel: `variant` when set (the worker's test-only variants have no key the runtime
// accepts), else `key` ("" = the runtime's choice, tuned or default).
struct Pick {
  const Variant* variant = nullptr;
  std::string key;
};

// Whose arguments a launch takes: input set `index`, or reduced run `index`.
struct Target {
  enum Kind { kSet, kReduced } kind = kSet;
  int index = 0;
};

// A kernel planned for one target's arguments; `run` launches it on any target of the same
// shape (all input sets share set 0's). Captured into a CUDA graph: no allocation, no sync.
struct Planned {
  std::string variant;  // the key that runs
  Choice choice = Choice::kDefault;
  int num_splits = 0;   // decode's split-KV count; 0 for families without one
  std::function<absl::Status(Target, CUstream)> run;
};

class BenchFamily {
 public:
  virtual ~BenchFamily() = default;
  virtual BenchLayout Layout() const = 0;
  // Called for sets 0, 1, ... in order.
  virtual absl::Status MakeSet(SetMaker& m) = 0;
  // With the bench's seed (BenchOptions::seed); only when BenchOptions::reduced_check.
  virtual absl::StatusOr<ReducedCase> MakeReduced(DeviceArena& mem, uint64_t seed) = 0;
  virtual absl::StatusOr<Planned> Plan(const Pick& pick, Target t) = 0;
  virtual void AddInfo(nlohmann::json& /*j*/) const {}
};

class BenchHarness {
 public:
  // Makes the input sets on rt's device, the reduced case (o.reduced_check) and, with
  // o.reference_key, the full-shape reference output.
  static absl::StatusOr<std::unique_ptr<BenchHarness>> Create(Runtime& rt, std::unique_ptr<BenchFamily> family,
                                                              const BenchOptions& o);
  ~BenchHarness();
  BenchHarness(const BenchHarness&) = delete;
  BenchHarness& operator=(const BenchHarness&) = delete;

  // (a) and (b). A non-OK status is a CUDA error: the context may be unusable.
  absl::StatusOr<VerifyResult> Verify(const Variant& v);
  absl::StatusOr<Timing> Time(const Pick& pick, int reps);

  int num_sets() const { return num_sets_; }
  // sets, set_bytes, l2_bytes, reduced (+ masked_rows), full_reference, and the family's.
  nlohmann::json Info() const;

 private:
  BenchHarness(Runtime& rt, std::unique_ptr<BenchFamily> family, const BenchOptions& o);
  absl::Status MakeSets();
  absl::Status MakeFullReference();
  // Plans, launches and waits.
  absl::Status Run(const Pick& pick, Target t);
  // Poisons out_elems values at out, runs, and compares the first `elems` with want's,
  // leaving out the rows (of `row` values) that `masked` marks.
  absl::StatusOr<ref::ErrorStats> RunAndCompare(const Pick& pick, Target t, void* out, size_t out_elems,
                                                const std::vector<double>& want, size_t elems,
                                                const std::vector<char>& masked, int row);
  // Poisons out_elems values at out, runs, and compares each part; the worst part's error,
  // its name in *worst.
  absl::StatusOr<ref::ErrorStats> RunAndCompareParts(const Pick& pick, Target t, const ReducedCase& c,
                                                     const std::vector<ReducedPart>& parts, std::string* worst);

  Runtime& rt_;
  std::unique_ptr<BenchFamily> family_;
  BenchLayout layout_;
  BenchOptions opts_;
  CUstream stream_ = nullptr;
  std::unique_ptr<DeviceFill> fill_;
  DeviceArena mem_;
  void* out_ = nullptr;  // shared by the input sets
  int num_sets_ = 0;
  std::unique_ptr<ReducedCase> reduced_;
  long masked_rows_ = 0;
  std::vector<double> full_ref_;  // the reference variant's output on set 0
};

}  // namespace parallax::search::internal
