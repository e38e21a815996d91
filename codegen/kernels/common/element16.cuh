// The 16-bit element type: conversions to and from fp32. One source for bf16 and fp16: the
// generator defines PLX_E16 (the PTX type name, "bf16" or "f16") and PLX_E16_BF16 (1 or 0)
// right before this file.
// Needs: prelude.cuh (plx_e16, plx_u32).

// ---- prelude: 16-bit elements (PLX_E16) -------------------------------------------------
__device__ __forceinline__ float plx_to_float(plx_e16 x) {
#if PLX_E16_BF16
  return __uint_as_float(((plx_u32)x) << 16);  // bf16 is the top half of an fp32
#else
  float f;
  asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(x));
  return f;
#endif
}
__device__ __forceinline__ plx_e16 plx_from_float(float x) {
  plx_e16 r;
  asm("cvt.rn." PLX_E16 ".f32 %0, %1;" : "=h"(r) : "f"(x));
  return r;
}
// Two floats -> one register of two elements (lo in the low half), round to nearest even.
__device__ __forceinline__ plx_u32 plx_pack2(float lo, float hi) {
  plx_u32 r;
  asm("cvt.rn." PLX_E16 "x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
  return r;
}
