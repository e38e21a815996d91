// What the in-process benches (decode_bench.cc, prefill_bench.cc) share: device buffers,
// poisoning and downloading 16-bit outputs, and the CUDA-graph timing loop.
#pragma once

#include <cuda.h>

#include <cstddef>
#include <functional>
#include <vector>

#include "absl/status/statusor.h"
#include "cuda_driver.h"
#include "parallax/codegen/variant.h"

#ifndef PLX_RETURN_IF_ERROR
#define PLX_RETURN_IF_ERROR(expr)                      \
  do {                                                 \
    if (absl::Status s_ = (expr); !s_.ok()) return s_; \
  } while (0)
#endif

namespace parallax::search::internal {

// The loaded driver; only called once a Runtime exists (so the driver is there).
const cu::Api* Api();

// A device allocation freed on scope exit.
struct DevBuf {
  CUdeviceptr p = 0;
  size_t bytes = 0;
  DevBuf() = default;
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
  ~DevBuf();
  absl::Status Alloc(size_t n);
  absl::Status Upload(const void* src, size_t n);
  void* get() const { return reinterpret_cast<void*>(p); }
};

// The spec's tolerance against the float64 reference (relative Frobenius).
double Tolerance(DType t);

// Fills `elems` 16-bit values with a NaN payload, so that unwritten outputs show.
absl::Status Poison(const DevBuf& b, size_t elems, DType t);
// The first `elems` 16-bit values of b, as doubles.
absl::StatusOr<std::vector<double>> Download(const DevBuf& b, size_t elems, DType t);

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
