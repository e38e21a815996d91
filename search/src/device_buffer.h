// Device memory for the in-process benches: owned allocations, and 16-bit outputs poisoned
// before a launch and read back as doubles after it.
#pragma once

#include <cuda.h>

#include <cstddef>
#include <vector>

#include "absl/status/statusor.h"
#include "parallax/codegen/variant.h"
#include "parallax/runtime/cuda_driver.h"
#include "status_macros.h"

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

// Fills `elems` 16-bit values at p with a NaN payload, so that unwritten outputs show.
absl::Status Poison(void* p, size_t elems, DType t);
// The first `elems` 16-bit values at p, as doubles.
absl::StatusOr<std::vector<double>> Download(const void* p, size_t elems, DType t);

}  // namespace parallax::search::internal
