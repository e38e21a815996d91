#include "device_fill.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "parallax/runtime/cuda_driver.h"
#include "parallax/runtime/nvrtc_compiler.h"

namespace parallax::search::internal {
namespace {

constexpr const char* kSource = R"cuda(
__device__ __forceinline__ unsigned long long mix(unsigned long long z) {  // splitmix64
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
__device__ __forceinline__ float normal(unsigned long long seed, unsigned long long i) {
  const unsigned long long h = mix(seed ^ mix(i));
  const float u1 = ((h >> 40) + 1) * (1.0f / 16777217.0f);        // (0, 1]
  const float u2 = ((h >> 16) & 0xffffff) * (1.0f / 16777216.0f);  // [0, 1)
  return sqrtf(-2.0f * __logf(u1)) * __cosf(6.2831853f * u2);
}
extern "C" __global__ void plx_fill_rows(unsigned short* out, long long rows, int d,
                                         unsigned long long seed, int rms, int bf16) {
  const int lane = threadIdx.x & 31;
  const long long nwarps = ((long long)gridDim.x * blockDim.x) >> 5;
  const int per = d >> 5;
  for (long long row = ((long long)blockIdx.x * blockDim.x + threadIdx.x) >> 5; row < rows; row += nwarps) {
    float x[8];
    float ss = 0.f;
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      x[i] = i < per ? normal(seed, (unsigned long long)row * d + lane + 32 * i) : 0.f;
      ss += x[i] * x[i];
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
    const float f = rms ? rsqrtf(ss / d) : 1.f;
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      if (i >= per) break;
      unsigned short h;
      if (bf16) asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(h) : "f"(x[i] * f));
      else asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(x[i] * f));
      out[row * d + lane + 32 * i] = h;
    }
  }
}
)cuda";

}  // namespace

const char* DeviceFillSource() { return kSource; }

absl::StatusOr<std::unique_ptr<DeviceFill>> DeviceFill::Create(const std::string& arch, int sm_count) {
  absl::StatusOr<const cu::Api*> api = cu::Driver();
  if (!api.ok()) return api.status();
  CompileOptions co;
  co.arch = arch;
  absl::StatusOr<CompileResult> r = CompileCuda(kSource, "plx_fill_rows.cu", co);
  if (!r.ok()) return r.status();
  std::unique_ptr<DeviceFill> f(new DeviceFill());
  f->sm_count_ = std::max(1, sm_count);
  PLX_CU_RETURN_IF_ERROR(*api, cuModuleLoadData(&f->module_, r->cubin.data()));
  PLX_CU_RETURN_IF_ERROR(*api, cuModuleGetFunction(&f->fn_, f->module_, "plx_fill_rows"));
  return f;
}

DeviceFill::~DeviceFill() {
  if (module_) (*cu::Driver())->cuModuleUnload(module_);
}

absl::Status DeviceFill::Rows(CUdeviceptr out, int64_t rows, int d, DType t, bool rms, uint64_t seed, CUstream s) {
  if (d % 32 != 0 || d > 256) return absl::InvalidArgumentError(absl::StrCat("fill: head_dim ", d));
  if (rows <= 0) return absl::OkStatus();
  const cu::Api* api = *cu::Driver();
  unsigned short* ptr = reinterpret_cast<unsigned short*>(out);
  long long n = rows;
  int dd = d, r = rms ? 1 : 0, bf = t == DType::kBF16 ? 1 : 0;
  unsigned long long sd = seed;
  void* args[] = {&ptr, &n, &dd, &sd, &r, &bf};
  const int threads = 256;  // 8 rows at a time per CTA
  const long long blocks = std::min<long long>((rows + 7) / 8, int64_t(sm_count_) * 64);
  PLX_CU_RETURN_IF_ERROR(api, cuLaunchKernel(fn_, static_cast<unsigned>(blocks), 1, 1, threads, 1, 1, 0, s,
                                             args, nullptr));
  return absl::OkStatus();
}

}  // namespace parallax::search::internal
