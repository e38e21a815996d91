// Shared pieces of the GPU correctness suites: device buffers, model-like random inputs,
// 16-bit conversions, and one decode / prefill case run against the float64 reference.
#pragma once

#include <cuda.h>

#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "parallax/codegen/reference.h"
#include "parallax/runtime/runtime.h"

namespace parallax::testing {

// The runtime for device 0, or null with the reason (tests GTEST_SKIP on null).
Runtime* SharedRuntime(std::string* why_not);

uint16_t ToHalfBits(double x, DType t);
double FromHalfBits(uint16_t h, DType t);

// A device allocation freed on scope exit.
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t bytes);
  ~DeviceBuffer();
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void* get() const { return reinterpret_cast<void*>(ptr_); }
  void Upload(const void* src, size_t bytes);
  void Download(void* dst, size_t bytes) const;
  void Fill16(uint16_t value, size_t count);

 private:
  CUdeviceptr ptr_ = 0;
};

struct DecodeCase {
  DType dtype = DType::kBF16;
  int head_dim = 128, hq = 8, hkv = 2, batch = 2;
  std::vector<int> seqlens = {100, 37};
  int page_size = 0;  // 0: contiguous
  int window = 0;
  bool learned = true;
  Affine affine = Affine::kPlain;
  double r_scale = 1.0;
  double q_scale = 1.0;    // large values test |s1| ~ 1e4
  double tau = -1.0;
  bool zero_r = false;
  int num_splits = 0;      // 0: auto
  std::string key;         // explicit variant ("" = runtime default)
  uint64_t seed = 1;
  std::string Name() const;
};

struct CaseResult {
  ref::ErrorStats err;
  double tolerance = 0;
  std::string variant;
  int num_splits = 0;
  std::vector<double> out;  // the kernel's output, as doubles
  long ill_conditioned_rows = 0;  // amplified rows with |delta| < kMinDelta, left out of err
};

// The amplified form divides by delta = 1 - (tbar - r.q); rows with |delta| below this
// amplify fp32 rounding in (tbar - r.q) beyond any fixed relative bound, so the error of
// such rows is reported separately instead of being held to the spec's tolerance.
inline constexpr double kMinDelta = 0.05;

absl::StatusOr<CaseResult> RunDecodeCase(Runtime& rt, const DecodeCase& c);

struct PrefillCase {
  DType dtype = DType::kBF16;
  int head_dim = 128, hq = 4, hkv = 2, batch = 2;
  std::vector<int> seqlens_q = {70, 33};
  std::vector<int> seqlens_k = {70, 33};
  bool varlen = false;  // pack sequences with cu_seqlens
  int window = 0;
  bool learned = true;
  Affine affine = Affine::kPlain;
  double r_scale = 1.0;
  double tau = -1.0;
  std::string key;
  uint64_t seed = 1;
  std::string Name() const;
};

absl::StatusOr<CaseResult> RunPrefillCase(Runtime& rt, const PrefillCase& c);

double Tolerance(DType t);  // the spec's relative Frobenius bound

}  // namespace parallax::testing
