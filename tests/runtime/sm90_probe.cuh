// Test kernels for the sm_90a primitives (codegen/kernels/sm90/). plx_sm90_probe: one
// warpgroup loads a 64 x 64 Q tile and a 64 x 64 K tile with TMA (128-byte swizzle) behind one
// mbarrier, computes S = Q K^T with four wgmma m64n64k16 steps along the head dim, and writes S
// in fp32. plx_sm90_probe_pv (below) adds the P V step.
// Appended to prelude.cuh, element16.cuh, sm90/async.cuh and sm90/wgmma.cuh by the tests.

// The first 1024-byte aligned byte of the dynamic shared memory (the 128-byte swizzle repeats
// every 1024 bytes), and `n` 64 x 64 bf16 tiles loaded there by TMA behind one mbarrier.
template <int N>
__device__ __forceinline__ plx_e16* probe_load_tiles(unsigned char* smem_raw, plx_u64* bar,
                                                     const PlxTensorMap* const (&maps)[N]) {
  const plx_u32 base = plx_smem_addr(smem_raw);
  plx_e16* tiles = reinterpret_cast<plx_e16*>(smem_raw + ((base + 1023) / 1024 * 1024 - base));
  if (threadIdx.x == 0) {
    plx_mbar_init(bar, 1);
    plx_mbar_init_fence();
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    plx_mbar_arrive_expect_tx(bar, N * 64 * 64 * 2);
    for (int i = 0; i < N; ++i) plx_tma_load_2d(tiles + i * 64 * 64, maps[i], bar, 0, 0);
  }
  plx_mbar_wait(bar, 0);
  return tiles;
}

// Writes a 64 x 64 fp32 accumulator (the layout in wgmma.cuh) row-major to out.
__device__ __forceinline__ void probe_store(const float (&d)[32], float* out) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int row = 16 * warp + lane / 4;
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    const int col = 8 * j + 2 * (lane % 4);
    out[row * 64 + col] = d[4 * j];
    out[row * 64 + col + 1] = d[4 * j + 1];
    out[(row + 8) * 64 + col] = d[4 * j + 2];
    out[(row + 8) * 64 + col + 1] = d[4 * j + 3];
  }
}

extern "C" __global__ void __launch_bounds__(128) plx_sm90_probe(const __grid_constant__ PlxTensorMap tq,
                                                                  const __grid_constant__ PlxTensorMap tk,
                                                                  float* out) {
  extern __shared__ unsigned char smem_raw[];
  __shared__ __align__(8) plx_u64 bar;
  const PlxTensorMap* const maps[2] = {&tq, &tk};
  plx_e16* sq = probe_load_tiles(smem_raw, &bar, maps);
  plx_e16* sk = sq + 64 * 64;

  float d[32];
#pragma unroll
  for (int i = 0; i < 32; ++i) d[i] = 0.f;
  const plx_u64 da = plx_wgmma_desc_sw128(sq), db = plx_wgmma_desc_sw128(sk);
  plx_wgmma_fence();
#pragma unroll
  for (int k = 0; k < 4; ++k) plx_wgmma_m64n64k16(d, plx_wgmma_desc_k(da, k), plx_wgmma_desc_k(db, k), 1);
  plx_wgmma_commit();
  plx_wgmma_wait<0>();

  probe_store(d, out);
}

// The attention inner step: S = Q K^T (both operands from shared memory), P = bf16(S * scale)
// repacked in registers as the A operand, O = P V with V MN-major from shared memory (TMA).
extern "C" __global__ void __launch_bounds__(128) plx_sm90_probe_pv(const __grid_constant__ PlxTensorMap tq,
                                                                     const __grid_constant__ PlxTensorMap tk,
                                                                     const __grid_constant__ PlxTensorMap tv,
                                                                     float scale, float* out) {
  extern __shared__ unsigned char smem_raw[];
  __shared__ __align__(8) plx_u64 bar;
  const PlxTensorMap* const maps[3] = {&tq, &tk, &tv};
  plx_e16* sq = probe_load_tiles(smem_raw, &bar, maps);
  plx_e16* sk = sq + 64 * 64;
  plx_e16* sv = sk + 64 * 64;

  float s[32];
#pragma unroll
  for (int i = 0; i < 32; ++i) s[i] = 0.f;
  const plx_u64 da = plx_wgmma_desc_sw128(sq), db = plx_wgmma_desc_sw128(sk), dv = plx_wgmma_desc_sw128(sv);
  plx_wgmma_fence();
#pragma unroll
  for (int k = 0; k < 4; ++k) plx_wgmma_m64n64k16(s, plx_wgmma_desc_k(da, k), plx_wgmma_desc_k(db, k), 1);
  plx_wgmma_commit();
  plx_wgmma_wait<0>();

  float o[32];
#pragma unroll
  for (int i = 0; i < 32; ++i) o[i] = 0.f;
  plx_wgmma_fence();
#pragma unroll
  for (int kb = 0; kb < 4; ++kb) {  // keys 16 kb .. 16 kb + 15: S columns j = 2 kb, 2 kb + 1
    plx_u32 a[4];
    a[0] = plx_pack2(s[8 * kb + 0] * scale, s[8 * kb + 1] * scale);
    a[1] = plx_pack2(s[8 * kb + 2] * scale, s[8 * kb + 3] * scale);
    a[2] = plx_pack2(s[8 * kb + 4] * scale, s[8 * kb + 5] * scale);
    a[3] = plx_pack2(s[8 * kb + 6] * scale, s[8 * kb + 7] * scale);
    plx_wgmma_m64n64k16_rs<1>(o, a, plx_wgmma_desc_rows(dv, kb), 1);
  }
  plx_wgmma_commit();
  plx_wgmma_wait<0>();

  probe_store(o, out);
}
