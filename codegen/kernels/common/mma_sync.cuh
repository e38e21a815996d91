// Tensor-core operations of the mma path: ldmatrix fragment loads from shared memory and
// mma.sync m16n8k16 with 16-bit inputs (PLX_E16) and fp32 accumulators. The fma path does not
// carry this file.
// Needs: prelude.cuh (plx_u32, plx_smem_addr), PLX_E16.

// ---- prelude: ldmatrix and mma.sync ----------------------------------------------------
// By 32-bit shared-memory address (a caller that keeps its offsets in registers) ...
__device__ __forceinline__ void plx_ldsm_x4(plx_u32 (&r)[4], plx_u32 addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr));
}
__device__ __forceinline__ void plx_ldsm_x4_trans(plx_u32 (&r)[4], plx_u32 addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr));
}
// ... or by pointer into shared memory.
__device__ __forceinline__ void plx_ldmatrix_x4(plx_u32 (&r)[4], const void* smem) { plx_ldsm_x4(r, plx_smem_addr(smem)); }
__device__ __forceinline__ void plx_ldmatrix_x4_trans(plx_u32 (&r)[4], const void* smem) {
  plx_ldsm_x4_trans(r, plx_smem_addr(smem));
}
// D += A * B on the tensor cores.
__device__ __forceinline__ void plx_mma(float (&d)[4], const plx_u32 (&a)[4], plx_u32 b0, plx_u32 b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32." PLX_E16 "." PLX_E16 ".f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
