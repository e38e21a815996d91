// Hopper warpgroup MMA (wgmma.mma_async) on operands in shared memory, as inline PTX: the
// matrix descriptor of a K-major tile in the 128-byte swizzle TMA writes, and
// D[64 x N] += A[64 x 16] * B[N x 16]^T with 16-bit inputs (PLX_E16) and fp32 accumulators.
// The accumulator fragment of thread t of the warpgroup: rows 16 (t / 32) + (t % 32) / 4 and
// that + 8, columns 8 j + 2 (t % 4) and + 1: d[4 j + 0..1] in the first row, d[4 j + 2..3] in
// the second (the mma.sync C layout, repeated over N / 8 column groups).
// Needs: prelude.cuh (plx_smem_addr, plx_u32), async.cuh (plx_u64), PLX_E16. Compile for sm_90a.

// ---- sm90: wgmma -------------------------------------------------------------------------
// Descriptor of a tile of rows x 64 16-bit elements (128 bytes a row) in the 128-byte swizzle:
// 8-row groups of 1024 bytes (the stride byte offset); the leading offset is unused for a
// swizzled K-major tile. The tile must be 1024-byte aligned. Advancing 16 elements along K
// inside the 128-byte row is +32 bytes on the start address: plx_wgmma_desc_k(desc, k16).
__device__ __forceinline__ plx_u64 plx_wgmma_desc_sw128(const void* smem) {
  const plx_u64 addr = plx_smem_addr(smem);
  return ((addr & 0x3FFFF) >> 4) | (plx_u64(1) << 16) | (plx_u64(1024 >> 4) << 32) | (plx_u64(1) << 62);
}
__device__ __forceinline__ plx_u64 plx_wgmma_desc_k(plx_u64 desc, int k16) { return desc + plx_u64(2 * k16); }
// The same tile read MN-major (the rows are the K dimension, e.g. V as the B operand of P V):
// 16 rows further along K is +2048 bytes.
__device__ __forceinline__ plx_u64 plx_wgmma_desc_rows(plx_u64 desc, int k16) { return desc + plx_u64(128 * k16); }

// A tile read MN-major whose N dimension is wider than one 128-byte row: its 64-element
// column chunks lie chunk_bytes apart (the leading byte offset), each chunk [rows][64]
// swizzled as TMA writes it; 8 rows further along K is +1024 bytes (the stride byte offset).
__device__ __forceinline__ plx_u64 plx_wgmma_desc_sw128_mn(const void* smem, int chunk_bytes) {
  const plx_u64 addr = plx_smem_addr(smem);
  return ((addr & 0x3FFFF) >> 4) | (plx_u64(chunk_bytes >> 4) << 16) | (plx_u64(1024 >> 4) << 32) |
         (plx_u64(1) << 62);
}

// Operand fences: an empty asm that "modifies" each register, so the compiler neither moves
// reads of an asynchronous MMA's accumulators above the wait that lands them nor reuses its
// register operands before that wait (ptxas would otherwise serialize the MMAs, C7514).
template <int N>
__device__ __forceinline__ void plx_fence_regs(float (&r)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+f"(r[i])::"memory");
}
template <int N>
__device__ __forceinline__ void plx_fence_regs(plx_u32 (&r)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+r"(r[i])::"memory");
}

__device__ __forceinline__ void plx_wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;" ::: "memory"); }
__device__ __forceinline__ void plx_wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory"); }
template <int N>
__device__ __forceinline__ void plx_wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;" :: "n"(N) : "memory");
}

// D[64 x 64] (+)= A B^T, both operands K-major in shared memory; scale_d = 0 overwrites D.
__device__ __forceinline__ void plx_wgmma_m64n64k16(float (&d)[32], plx_u64 desc_a, plx_u64 desc_b, int scale_d) {
  asm volatile(
      "{\n .reg .pred p;\n setp.ne.b32 p, %34, 0;\n"
      " wgmma.mma_async.sync.aligned.m64n64k16.f32." PLX_E16 "." PLX_E16 " "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, "
      "%32, %33, p, 1, 1, 0, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
      : "l"(desc_a), "l"(desc_b), "r"(scale_d));
}

// D[64 x 64] (+)= A B with A in registers (the mma.sync A layout per warp: a[0] rows g, k 2c..;
// a[1] rows g + 8; a[2] rows g, k 2c + 8..; a[3] rows g + 8, k 2c + 8..; g = lane / 4, c = lane % 4,
// rows offset by 16 per warp) and B in shared memory, MN-major (TransB = 1: B[k][n] with n
// contiguous, as V tiles are) or K-major (TransB = 0).
template <int TransB>
__device__ __forceinline__ void plx_wgmma_m64n64k16_rs(float (&d)[32], const plx_u32 (&a)[4], plx_u64 desc_b,
                                                       int scale_d) {
  asm volatile(
      "{\n .reg .pred p;\n setp.ne.b32 p, %37, 0;\n"
      " wgmma.mma_async.sync.aligned.m64n64k16.f32." PLX_E16 "." PLX_E16 " "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, "
      "{%32, %33, %34, %35}, %36, p, 1, 1, %38;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(scale_d), "n"(TransB));
}
