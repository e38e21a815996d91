// The prelude every generated kernel carries: what cuda_bf16.h / cuda_fp16.h and CUTLASS
// would otherwise provide, reduced to the few operations the kernels use, as inline PTX.
#include "absl/strings/str_cat.h"
#include "generator_internal.h"

namespace parallax::gen {

const absl::string_view kPreludeCommon = R"cuda(
// ---- prelude: PTX wrappers (no toolkit headers are needed) ---------------------------
typedef unsigned short plx_e16;  // raw 16-bit element (bf16 or fp16 bits)
typedef unsigned int plx_u32;

#define PLX_INF __int_as_float(0x7f800000)

struct plx_u32x4 { plx_u32 x, y, z, w; };

__device__ __forceinline__ plx_u32 plx_smem_addr(const void* p) {
  plx_u32 a;
  asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(a) : "l"(p));
  return a;
}
// 16-byte global->shared copy; bytes == 0 zero-fills (keys past the end of a sequence).
__device__ __forceinline__ void plx_cp_async16(void* smem, const void* gmem, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n"
               :: "r"(plx_smem_addr(smem)), "l"(gmem), "r"(valid ? 16 : 0) : "memory");
}
__device__ __forceinline__ void plx_cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}
template <int N>
__device__ __forceinline__ void plx_cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" :: "n"(N) : "memory");
}
__device__ __forceinline__ float plx_exp2(float x) {  // exp2(-inf) == +0
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}
__device__ __forceinline__ float plx_quad_max(float x) {  // over the 4 lanes of an MMA row
  x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
  return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
}
__device__ __forceinline__ float plx_quad_sum(float x) {
  x += __shfl_xor_sync(0xffffffffu, x, 1);
  return x + __shfl_xor_sync(0xffffffffu, x, 2);
}
__device__ __forceinline__ float plx_warp_max(float x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
  return x;
}
__device__ __forceinline__ float plx_warp_sum(float x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}
)cuda";

namespace {

// Shared-memory fragment loads for the tensor-core path only.
constexpr absl::string_view kLdmatrix = R"cuda(
__device__ __forceinline__ void plx_ldmatrix_x4(plx_u32 (&r)[4], const void* smem) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(plx_smem_addr(smem)));
}
__device__ __forceinline__ void plx_ldmatrix_x4_trans(plx_u32 (&r)[4], const void* smem) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(plx_smem_addr(smem)));
}
)cuda";

constexpr absl::string_view kBF16 = R"cuda(
// ---- prelude: bf16 -----------------------------------------------------------------
__device__ __forceinline__ float plx_to_float(plx_e16 x) {
  return __uint_as_float(((plx_u32)x) << 16);
}
__device__ __forceinline__ plx_e16 plx_from_float(float x) {
  plx_e16 r;
  asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(r) : "f"(x));
  return r;
}
// Two floats -> one register of two bf16 (lo in the low half), round to nearest even.
__device__ __forceinline__ plx_u32 plx_pack2(float lo, float hi) {
  plx_u32 r;
  asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
  return r;
}
// D += A * B on the tensor cores: m16n8k16, bf16 inputs, fp32 accumulators.
__device__ __forceinline__ void plx_mma(float (&d)[4], const plx_u32 (&a)[4], plx_u32 b0, plx_u32 b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
)cuda";

constexpr absl::string_view kFP16 = R"cuda(
// ---- prelude: fp16 -----------------------------------------------------------------
__device__ __forceinline__ float plx_to_float(plx_e16 x) {
  float f;
  asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(x));
  return f;
}
__device__ __forceinline__ plx_e16 plx_from_float(float x) {
  plx_e16 r;
  asm("cvt.rn.f16.f32 %0, %1;" : "=h"(r) : "f"(x));
  return r;
}
__device__ __forceinline__ plx_u32 plx_pack2(float lo, float hi) {
  plx_u32 r;
  asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
  return r;
}
// D += A * B on the tensor cores: m16n8k16, fp16 inputs, fp32 accumulators.
__device__ __forceinline__ void plx_mma(float (&d)[4], const plx_u32 (&a)[4], plx_u32 b0, plx_u32 b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
)cuda";

}  // namespace

std::string Prelude(DType dtype, MathPath path) {
  // The fma path carries neither ldmatrix nor mma.sync: it never uses them.
  std::string dt(dtype == DType::kBF16 ? kBF16 : kFP16);
  if (path != MathPath::kMma) dt = dt.substr(0, dt.find("// D += A * B on the tensor cores"));
  return absl::StrCat(kPreludeCommon, path == MathPath::kMma ? kLdmatrix : "", dt);
}

}  // namespace parallax::gen
