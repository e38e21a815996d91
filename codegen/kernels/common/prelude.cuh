// Prelude of every generated kernel: the few operations cuda_bf16.h, cuda_fp16.h and CUTLASS
// would otherwise provide, as inline PTX, so NVRTC needs no include path.
// Needs: nothing. Comes right after the launch ABI (kernel_abi.h).

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
