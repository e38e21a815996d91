// Random model-like inputs written on the GPU: a full-size decode shape (up to tens of GiB
// of K/V) would take minutes to generate on the host. A tiny NVRTC kernel, one warp per row:
// Box-Muller normals from a counter hash, optionally RMS-normalised per row, rounded to the
// 16-bit dtype.
#pragma once

#include <cuda.h>

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "parallax/codegen/variant.h"

namespace parallax::search::internal {

// The kernel's CUDA source (compiled by Create; tests compile it without a GPU).
const char* DeviceFillSource();

class DeviceFill {
 public:
  // Compiles and loads the kernel into the current context.
  static absl::StatusOr<std::unique_ptr<DeviceFill>> Create(const std::string& arch, int sm_count);
  ~DeviceFill();

  // rows x d values (d a multiple of 32, at most 256) at `out`.
  absl::Status Rows(CUdeviceptr out, int64_t rows, int d, DType t, bool rms, uint64_t seed, CUstream s);

 private:
  DeviceFill() = default;
  CUmodule module_ = nullptr;
  CUfunction fn_ = nullptr;
  int sm_count_ = 1;
};

}  // namespace parallax::search::internal
