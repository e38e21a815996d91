// How a step's dQ/dR partials reach the float32 accumulators (Schedule::dq_reduce):
//   atomic (kDqReduce 0): one red.add.f32 per element, straight from the MMA fragments;
//   bulk   (1): each warp stages its dq_step job (16 rows x 64 columns) in shared memory and
//          hands it to the copy engine itself, one row piece per lane (cp.reduce.async.bulk
//          .add.f32, sm_90+), which adds it in L2 as whole lines instead of 8-sector
//          scatters; no CTA barrier: a lane waits for its own copies to have read the tile
//          before its warp rewrites it. Below sm_90 it falls back to red.add (the staging
//          tile is then unused);
//   det    (2): the CTA stages the step's rows and warp 0 sends whole rows, with the key
//          blocks of each query block taking turns in key order (a counter per (query block,
//          head) in the row coefficients), so every float32 sum is formed in one order and
//          dq, dr are bit-reproducible.
// The turn order cannot deadlock: a CTA only waits for CTAs of lower key blocks of the same
// (kv head, sequence), which have lower linear block indices and so are already resident or
// done, and a waiting CTA holds nothing they need.
// Needs: prelude.cuh (plx_smem_addr), sequence.cuh, rows.cuh (kCoefCount); kDqReduce,
// kBlockM, kBlockN, kHeadDim, kNumQHeads, kWindow (generator).

constexpr bool kDqStaged = kDqReduce != 0;
constexpr bool kDqDet = kDqReduce == 2;
#if __CUDA_ARCH__ >= 900
constexpr bool kDqBulk = kDqStaged;
#else
constexpr bool kDqBulk = false;
#endif
// Staging rows are padded by 8 floats: the fragment stores (8 rows x 4 lanes per warp, float2)
// then fall in distinct banks within each half-warp. Bulk copies read each row on its own.
constexpr int kStageLd = kHeadDim + 8;
// The coefficient slot of a query block's first row that counts the key blocks done (det).
constexpr int kCoefTurn = 6;

__device__ __forceinline__ void plx_red_add(float* addr, float x) {
  asm volatile("red.add.f32 [%0], %1;" :: "l"(addr), "f"(x) : "memory");  // generic address
}
template <int kFloats>
__device__ __forceinline__ void plx_bulk_reduce(float* gdst, const float* ssrc) {
  static_assert(kFloats % 4 == 0, "bulk copies move multiples of 16 bytes");
  asm volatile("cp.reduce.async.bulk.global.shared::cta.bulk_group.add.f32 [%0], [%1], %2;"
               :: "l"(gdst), "r"(plx_smem_addr(ssrc)), "n"(kFloats * 4) : "memory");
}
__device__ __forceinline__ void plx_bulk_reduce_row(float* gdst, const float* ssrc) {
  plx_bulk_reduce<kHeadDim>(gdst, ssrc);
}
__device__ __forceinline__ void plx_bulk_commit() { asm volatile("cp.async.bulk.commit_group;" ::: "memory"); }
// The staging tile may be rewritten once the copy engine has read it ...
__device__ __forceinline__ void plx_bulk_wait_read() { asm volatile("cp.async.bulk.wait_group.read 0;" ::: "memory"); }
// ... and the sums are in global memory once this returns.
__device__ __forceinline__ void plx_bulk_wait_done() { asm volatile("cp.async.bulk.wait_group 0;" ::: "memory"); }
// Generic-proxy writes (the staging stores, an acquired turn) before async-proxy reads/writes.
__device__ __forceinline__ void plx_fence_async_smem() { asm volatile("fence.proxy.async.shared::cta;" ::: "memory"); }
__device__ __forceinline__ void plx_fence_async_global() { asm volatile("fence.proxy.async.global;" ::: "memory"); }

// One element pair of a dQ/dR fragment: into the staging tile, or added to global memory.
__device__ __forceinline__ void dq_out_pair(float* stage, float* accum, int row, int col, long long grow, float x0,
                                            float x1) {
  if (kDqBulk) {
    *reinterpret_cast<float2*>(stage + row * kStageLd + col) = make_float2(x0, x1);
  } else {
    plx_red_add(accum + grow + col, x0);
    plx_red_add(accum + grow + col + 1, x1);
  }
}

// bulk: the warp's job (rows mt * 16.., columns c0..c0 + 63 of the step) is staged; lane l < 16
// sends row piece l of dQ, lane 16 + l that of dR. Each sending lane's bulk group is its own:
// dq_job_wait_read (same lanes, next step) waits for it before the warp rewrites the tile.
__device__ __forceinline__ void dq_job_send(const PlxPrefillBwdParams& p, const BwdSequence& seq, const float* stage,
                                           int h, int m0, int mt, int c0) {
  plx_fence_async_smem();
  __syncwarp();
  const int lane = threadIdx.x & 31, row = mt * 16 + (lane & 15), i = m0 + row;
  if (i >= seq.lq || (!kLearned && lane >= 16)) return;
  const long long grow = ((seq.q0 + i) * kNumQHeads + h) * kHeadDim + c0;
  if (lane < 16) plx_bulk_reduce<64>(p.dq_accum + grow, stage + row * kStageLd + c0);
  else plx_bulk_reduce<64>(p.dr_accum + grow, stage + (kBlockM + row) * kStageLd + c0);
  plx_bulk_commit();
}
__device__ __forceinline__ void dq_job_wait_read() {
  plx_bulk_wait_read();
  __syncwarp();
}

// det: the key block that adds first to the query block starting at row m0 (the smallest
// whose last key some row of the block sees; 0 without a window), and the turn counter.
__device__ __forceinline__ int dq_first_key_block(const PlxPrefillBwdParams& p, const BwdSequence& seq, int m0) {
  if (!kWindow || p.window <= 0) return 0;
  const int y = m0 + seq.diag - p.window + 1;
  return y <= 0 ? 0 : y / kBlockN;
}
__device__ __forceinline__ int* dq_turn(const PlxPrefillBwdParams& p, const BwdSequence& seq, int h, int m0) {
  return reinterpret_cast<int*>(p.row_coef + ((seq.q0 + m0) * kNumQHeads + h) * kCoefCount + kCoefTurn);
}
__device__ __forceinline__ void dq_wait_turn(const int* turn, int mine) {
  int seen;
  for (;;) {
    asm volatile("ld.acquire.gpu.global.b32 %0, [%1];" : "=r"(seen) : "l"(turn) : "memory");
    if (seen == mine) break;
    __nanosleep(64);
  }
}
__device__ __forceinline__ void dq_pass_turn(int* turn) {
  asm volatile("red.release.gpu.global.add.s32 [%0], %1;" :: "l"(turn), "r"(1) : "memory");
}

// After dq_step wrote the staged rows (all threads): hand the valid rows to the copy engine
// (warp 0, a row per lane), in det order. Other warps go on with the next step meanwhile.
__device__ __forceinline__ void dq_flush_rows(const PlxPrefillBwdParams& p, const BwdSequence& seq, float* stage,
                                             int h, int m0) {
  plx_fence_async_smem();
  __syncthreads();
  if ((threadIdx.x >> 5) != 0) return;
  const int lane = threadIdx.x & 31;
  int* turn = dq_turn(p, seq, h, m0);
  if (kDqDet) {
    if (lane == 0) dq_wait_turn(turn, blockIdx.x - dq_first_key_block(p, seq, m0));
    __syncwarp();
    plx_fence_async_global();
  }
  for (int r = lane; r < kBlockM; r += 32) {
    if (m0 + r >= seq.lq) break;
    const long long grow = ((seq.q0 + m0 + r) * kNumQHeads + h) * kHeadDim;
    plx_bulk_reduce_row(p.dq_accum + grow, stage + r * kStageLd);
    if (kLearned) plx_bulk_reduce_row(p.dr_accum + grow, stage + (kBlockM + r) * kStageLd);
  }
  plx_bulk_commit();
  if (kDqDet) {
    plx_bulk_wait_done();
    plx_fence_async_global();
    __syncwarp();
    if (lane == 0) {
      __threadfence();
      dq_pass_turn(turn);
    }
  }
}

// det below sm_90 (red.add): the whole CTA waits for its turn before its adds ...
__device__ __forceinline__ void dq_take_turn_all(const PlxPrefillBwdParams& p, const BwdSequence& seq, int h, int m0) {
  if (threadIdx.x == 0) dq_wait_turn(dq_turn(p, seq, h, m0), blockIdx.x - dq_first_key_block(p, seq, m0));
  __syncthreads();
}
// ... and passes it once every thread's adds are done.
__device__ __forceinline__ void dq_pass_turn_all(const PlxPrefillBwdParams& p, const BwdSequence& seq, int h, int m0) {
  __syncthreads();
  if (threadIdx.x == 0) {
    __threadfence();
    dq_pass_turn(dq_turn(p, seq, h, m0));
  }
}
