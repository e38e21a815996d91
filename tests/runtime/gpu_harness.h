// Shared pieces of the GPU correctness suites: device buffers, model-like random inputs,
// 16-bit conversions, and one decode / prefill case run against the float64 reference.
#pragma once

#include <cuda.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "parallax/codegen/reference.h"
#include "parallax/parallax.h"
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
  int queries = 1;    // query tokens per sequence (Tq > 1: multi-token decode, q [B, Tq, Hq, D])
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
  // Prefill's row statistics (PrefillCase::stats) against the reference: the worst lse error
  // relative to max(1, |lse|) of its row; the worst tbar error relative to max(1, the case's
  // peak |tbar|) (tbar is a weighted mean of r.k and may cancel to near 0); rows whose exact
  // values (no visible key: -inf and 0; probe none: tbar 0) did not come out; NaNs
  // (the buffers are poisoned, so unwritten rows show).
  struct Stats {
    double lse_err = 0, tbar_err = 0;
    long wrong_exact = 0, non_finite = 0, rows = 0;
  } stats;
  // Prefill's vbar (PrefillCase::vbar) against the reference's softmax output, every row
  // (rows without visible keys must be zeros; the buffer is poisoned, so unwritten rows show).
  ref::ErrorStats vbar_err;
};

// lse and tbar come from fp32 sums of the same bf16/fp16-rounded inputs the reference sees
// (s1 and s2 fp32 dot products, d1 an fp32 sum of ex2.approx terms), so only fp32 rounding
// separates them: at most 7e-7 (lse) and 9.3e-7 (tbar) over the 84 stats cases on an H200
// (all three paths, up to 1000 keys). 2e-5 leaves a 20x margin and still fails a wrong
// unit (log2 vs ln), a missing scale, 16-bit weights in d1 or an off-by-one row.
inline constexpr double kStatsTolerance = 2e-5;

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
  bool stats = false;  // also ask for lse and tbar (contiguous [B, Hq, Lq] / [Hq, total_q])
  int page_size = 0;     // > 0: K/V in a paged cache (extend), seqused_k = seqlens_k
  int shared_pages = 0;  // paged: the first pages of every sequence are sequence 0's
  bool vbar = false;     // also ask for vbar (like out: the softmax output of each row)
  bool causal = true;    // false: every query row sees all keys of its sequence
  std::string Name() const;
};

absl::StatusOr<CaseResult> RunPrefillCase(Runtime& rt, const PrefillCase& c);

// The case's problem and algorithm, and keys of the portable families for them (on an sm_90
// device the runtime's default prefill is the wgmma family, so these are asked for by key;
// "" when no such variant is valid): the fma path's first valid block_m from 32 down, and the
// mma.sync family's default.
Problem ProblemOf(const PrefillCase& c);
Algorithm AlgorithmOf(bool learned, Affine affine);
std::string FmaKey(const Problem& p, const Algorithm& a);
std::string MmaKey(const Problem& p, const Algorithm& a);
std::string FmaKey(const PrefillCase& c);
std::string MmaKey(const PrefillCase& c);

// Host vectors on the device (at least one element allocated).
std::unique_ptr<DeviceBuffer> Put16(const std::vector<uint16_t>& h);
std::unique_ptr<DeviceBuffer> PutInts(const std::vector<int>& h);

double Tolerance(DType t);  // the spec's relative Frobenius bound

// rows x d model-like values: unit RMS per row times `scale` (q, r, k as after RMSNorm) or,
// without rms_normalise, standard normal times scale (v).
std::vector<double> RandomRows(std::mt19937_64& rng, size_t rows, int d, bool rms_normalise, double scale);
// A prefill's shape and fresh q, r (times r_scale), k, v rows, padded to the longest sequence,
// drawn from rng in that order (float64: quantise before the reference sees them).
ref::PrefillInputs RandomPrefillInputs(std::mt19937_64& rng, int batch, int hq, int hkv, int d,
                                       const std::vector<int>& seqlens_q, const std::vector<int>& seqlens_k,
                                       bool causal, double r_scale);
// Rounds x to the dtype in place (the reference then sees what the kernel reads) and returns
// the 16-bit images.
std::vector<uint16_t> Quantise(std::vector<double>& x, DType t);

// `count` standard normal values rounded to t, on the device.
std::unique_ptr<DeviceBuffer> RandomHalves(std::mt19937_64& rng, size_t count, DType t);

// C API arguments run as plx_decode / plx_prefill run them: translated and checked by the C
// API's front end, planned and launched on rt (legacy default stream), synchronized. `out`
// (the buffer a.out describes, `count` 16-bit elements) is poisoned with NaN first; returns
// its contents.
absl::StatusOr<std::vector<uint16_t>> RunCApi(Runtime& rt, const plx_decode_args& a, DeviceBuffer& out,
                                              size_t count);
absl::StatusOr<std::vector<uint16_t>> RunCApi(Runtime& rt, const plx_prefill_args& a, DeviceBuffer& out,
                                              size_t count);

// One spelling of a window in the C API (parallax.h, "Windows"): window, and window_size as
// (left, right); PLX_WINDOW_SIZE_UNSET in both = not given.
struct WindowSpelling {
  int32_t window, left, right;
  std::string Name() const;
  template <typename CArgs>
  void ApplyTo(CArgs& a) const {
    a.window = window;
    a.window_left = left;
    a.window_right = right;
  }
};
// Runs every spelling of window w > 0 (window = w; window_size (w - 1, 0) and (w - 1, -1);
// both given) and of no window (window = 0; window_size (-1, 0) and (-1, -1)) through `run`,
// which returns the output's 16-bit values. OK when each group is bit-identical (memcmp)
// with no element left unwritten (RunCApi's poison), and the window changed the output (a
// window no narrower than the sequences would make the comparison prove nothing).
absl::Status CheckWindowSpellings(
    int32_t w, const std::function<absl::StatusOr<std::vector<uint16_t>>(const WindowSpelling&)>& run);

}  // namespace parallax::testing
