// The sm_90a primitives on the GPU (sm90_probe.cuh): TMA tile loads in the 128-byte swizzle
// behind an mbarrier; wgmma m64n64k16 with both operands in shared memory (S = Q K^T); and the
// attention inner step, P = bf16(S * scale) repacked in registers and O = P V with V read
// MN-major. Checked against float64 from the same bf16 inputs. Tensor maps come from
// cuTensorMapEncodeTiled in the driver the runtime loads. Skips without an sm_90 device.
#include <cmath>
#include <random>
#include <vector>

#include "gpu_harness.h"
#include "gtest/gtest.h"
#include "parallax/codegen/reference.h"
#include "parallax/runtime/cuda_driver.h"
#include "parallax/runtime/nvrtc_compiler.h"
#include "sm90_probe_source.h"

namespace parallax {
namespace {

constexpr int kTile = 64 * 64;
constexpr int kSmem = 3 * kTile * 2 + 1024;  // three tiles + room to align them to 1024 bytes

// A 64 x 64 row-major bf16 tile as one TMA box in the 128-byte swizzle.
absl::StatusOr<CUtensorMap> TileMap(const cu::Api* d, void* base) {
  CUtensorMap map;
  const cuuint64_t dims[2] = {64, 64};
  const cuuint64_t strides[1] = {64 * 2};  // bytes from one row to the next
  const cuuint32_t box[2] = {64, 64};
  const cuuint32_t elem[2] = {1, 1};
  PLX_CU_RETURN_IF_ERROR(d, cuTensorMapEncodeTiled(&map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, base, dims, strides,
                                                   box, elem, CU_TENSOR_MAP_INTERLEAVE_NONE,
                                                   CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_NONE,
                                                   CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE));
  return map;
}

double Bf16(double x) { return testing::FromHalfBits(testing::ToHalfBits(x, DType::kBF16), DType::kBF16); }

// A random bf16 tile on the device (and its values on the host) with its tensor map.
struct Tile {
  std::vector<double> host;
  std::unique_ptr<testing::DeviceBuffer> dev;
  CUtensorMap map;
};

class Sm90ProbeGpu : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    Runtime* rt = testing::SharedRuntime(&why);
    if (rt == nullptr) GTEST_SKIP() << why;
    if (rt->device().cc_major != 9) GTEST_SKIP() << "needs sm_90 (found sm_" << rt->device().cc_major << ")";
    d_ = *cu::Driver();
    ASSERT_NE(d_->cuTensorMapEncodeTiled, nullptr) << "driver lacks cuTensorMapEncodeTiled";
    absl::StatusOr<std::string> src = testing::Sm90ProbeSource();
    ASSERT_TRUE(src.ok()) << src.status();
    CompileOptions o;
    o.arch = "sm_90a";
    absl::StatusOr<CompileResult> bin = CompileCuda(*src, "sm90_probe.cu", o);
    ASSERT_TRUE(bin.ok()) << bin.status();
    ASSERT_EQ(d_->cuModuleLoadData(&module_, bin->cubin.data()), CUDA_SUCCESS);
    out_ = std::make_unique<testing::DeviceBuffer>(kTile * 4);
    std::vector<float> poison(kTile, std::nanf(""));
    out_->Upload(poison.data(), poison.size() * 4);
  }
  void TearDown() override {
    if (module_ != nullptr) d_->cuModuleUnload(module_);
  }

  Tile Random(uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> normal;
    std::vector<uint16_t> bits(kTile);
    Tile t;
    t.host.resize(kTile);
    for (int i = 0; i < kTile; ++i) {
      bits[i] = testing::ToHalfBits(normal(rng), DType::kBF16);
      t.host[i] = testing::FromHalfBits(bits[i], DType::kBF16);
    }
    t.dev = std::make_unique<testing::DeviceBuffer>(kTile * 2);
    t.dev->Upload(bits.data(), kTile * 2);
    absl::StatusOr<CUtensorMap> m = TileMap(d_, t.dev->get());
    EXPECT_TRUE(m.ok()) << m.status();
    if (m.ok()) t.map = *m;
    return t;
  }

  // Runs `kernel` with args (one CTA of one warpgroup) and returns the 64 x 64 fp32 output.
  std::vector<float> Run(const char* kernel, std::vector<void*> args) {
    CUfunction fn;
    EXPECT_EQ(d_->cuModuleGetFunction(&fn, module_, kernel), CUDA_SUCCESS);
    EXPECT_EQ(d_->cuFuncSetAttribute(fn, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, kSmem), CUDA_SUCCESS);
    EXPECT_EQ(d_->cuLaunchKernel(fn, 1, 1, 1, 128, 1, 1, kSmem, nullptr, args.data(), nullptr), CUDA_SUCCESS);
    EXPECT_EQ(d_->cuCtxSynchronize(), CUDA_SUCCESS);
    std::vector<float> out(kTile);
    out_->Download(out.data(), kTile * 4);
    return out;
  }

  const cu::Api* d_ = nullptr;
  CUmodule module_ = nullptr;
  std::unique_ptr<testing::DeviceBuffer> out_;
};

// S[i][j] = sum_c a[i][c] b[j][c] in float64.
std::vector<double> ABt(const std::vector<double>& a, const std::vector<double>& b) {
  std::vector<double> s(kTile, 0.0);
  for (int i = 0; i < 64; ++i)
    for (int j = 0; j < 64; ++j)
      for (int c = 0; c < 64; ++c) s[i * 64 + j] += a[i * 64 + c] * b[j * 64 + c];
  return s;
}

// Relative Frobenius error (ref::Compare: a NaN, i.e. an element never written, is +inf).
double RelFro(const std::vector<float>& got, const std::vector<double>& want) {
  return ref::Compare(std::vector<double>(got.begin(), got.end()), want).rel_frobenius;
}

TEST_F(Sm90ProbeGpu, TmaAndWgmmaComputeQKt) {
  Tile q = Random(7), k = Random(8);
  void* out = out_->get();
  const std::vector<float> s = Run("plx_sm90_probe", {&q.map, &k.map, &out});
  const double err = RelFro(s, ABt(q.host, k.host));
  std::printf("[sm90] TMA + wgmma SS m64n64k16 (S = Q K^T): rel_fro %.3g\n", err);
  EXPECT_LT(err, 1e-6);  // exact bf16 products, fp32 sums
}

TEST_F(Sm90ProbeGpu, RegisterPTimesMnMajorV) {
  Tile q = Random(9), k = Random(10), v = Random(11);
  float scale = 0.125f;
  void* out = out_->get();
  const std::vector<float> o = Run("plx_sm90_probe_pv", {&q.map, &k.map, &v.map, &scale, &out});
  const std::vector<double> s = ABt(q.host, k.host);
  std::vector<double> want(kTile, 0.0);
  for (int i = 0; i < 64; ++i)
    for (int key = 0; key < 64; ++key) {
      const double p = Bf16(s[i * 64 + key] * scale);
      for (int n = 0; n < 64; ++n) want[i * 64 + n] += p * v.host[key * 64 + n];
    }
  const double err = RelFro(o, want);
  std::printf("[sm90] wgmma RS m64n64k16, V MN-major (O = bf16(S/8) V): rel_fro %.3g\n", err);
  EXPECT_LT(err, 1e-2);  // P rounds to bf16 on both sides; S differs by fp32 vs float64 sums
}

}  // namespace
}  // namespace parallax
