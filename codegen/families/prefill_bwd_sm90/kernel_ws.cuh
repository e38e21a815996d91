// plx_bwd_main on sm_90a, warp-specialized (schedule warps 12): the phases of kernel.cuh with
// their math unchanged, fed by a producer warpgroup instead of every thread.
// Warpgroup 0 produces with cp.async, 16-byte chunks straight into the 128-byte swizzle the
// wgmma descriptors read: K, V once (warps 0-1 K, 2-3 V), then per step its warps 0, 1, 2
// copy Q, dO, (R) and warp 3 the 5 row coefficients (4-byte copies) into slot t % kStages
// of a ring. Each of its 128 threads ends a slot with cp.async.mbarrier.arrive.noinc on the
// slot's full barrier, which completes once every thread's copies have landed: no producer
// thread waits for its own copies, and no tensor map is needed (the launch ABI has none).
// Warpgroups 1 and 2 consume: each owns 64 keys (or half of dK, dV at head_dim 256) exactly as
// in kernel_sync.cuh, waits on full[slot], and each of its threads arrives on empty[slot] once
// its dK, dV wgmmas -- the slot's last readers -- have landed. The only barrier between the
// two consumers is one named barrier a step (kDsBar, 256 threads): both halves of dS are
// stored before either warpgroup's dQ^T wgmmas read them. dS is double-buffered (slot t % 2),
// so the store of step t + 2 cannot overtake a dQ^T of step t: that warpgroup passed step
// t + 1's barrier, which the other reaches only after its step-t dQ^T landed.
// No __syncthreads in the step loop. setmaxnreg moves registers from the producer
// (kProducerRegs, 24) to the consumers (kConsumerRegs, 240): the 384 x 168 the launch gets.
// Needs: kernel.cuh (the phases), sm90/async.cuh; kWarpSpecialized, kDsSlots == 2, kSmemBars,
// kProducerRegs, kConsumerRegs (generator).

static_assert(kWarpSpecialized && kDsSlots == 2 && kThreads == 128 * (kWgs + 1), "a producer and kWgs consumers");
static_assert(kProducerRegs + kWgs * kConsumerRegs <= (kWgs + 1) * 168, "setmaxnreg beyond the CTA's pool");
constexpr int kProducerThreads = 128;
constexpr int kDsBar = 3;  // named barrier of the consumers (1, 2: sm90_dq_send's per-warpgroup ones)

// ---- the barriers: full[kStages], empty[kStages], then the K/V tile's ---------------------
struct Sm90WsBars {
  plx_u64* base;
  __device__ __forceinline__ plx_u64* full(int s) const { return base + s; }
  __device__ __forceinline__ plx_u64* empty(int s) const { return base + kStages + s; }
  __device__ __forceinline__ plx_u64* kv() const { return base + 2 * kStages; }
};

// The 1024-byte aligned base of dynamic shared memory (the 128-byte swizzle's atoms).
__device__ __forceinline__ unsigned char* sm90_smem_base() {
  extern __shared__ unsigned char smem_raw[];
  const plx_u32 raw = plx_smem_addr(smem_raw);
  return smem_raw + ((raw + 1023) / 1024 * 1024 - raw);
}

// cp.async of `bytes` (16, or 4 for the row coefficients) to a shared-window address, zeros
// when !valid: 32-bit destinations keep the producer's copy loops in its 24 registers.
template <int kBytes>
__device__ __forceinline__ void ws_cp_async(plx_u32 dst, const void* src, bool valid) {
  if (kBytes == 16)
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" :: "r"(dst), "l"(src), "r"(valid ? 16 : 0)
                 : "memory");
  else
    asm volatile("cp.async.ca.shared.global [%0], [%1], %2, %3;\n" :: "r"(dst), "l"(src), "n"(kBytes),
                 "r"(valid ? kBytes : 0) : "memory");
}

// load_rows_sw128 by kLanes producer threads (a warp or two: lane = threadIdx.x % kLanes), its
// loop rolled: the producer runs on kProducerRegs (24) registers.
template <int kRows, int kLanes>
__device__ __forceinline__ void ws_load_rows(const plx_e16* tile, const plx_e16* g, long long stride, int valid) {
  const plx_u32 dst = plx_smem_addr(tile);
#pragma unroll 1
  for (int e = threadIdx.x % kLanes; e < kRows * kChunks; e += kLanes) {
    const int row = e / kChunks, c = e % kChunks;
    ws_cp_async<16>(dst + 2 * sw128<kRows>(row, c), g + (row < valid ? row * stride : 0) + c * 8, row < valid);
  }
}

// ---- producer phase: one step's query rows into a ring slot ------------------------------
// The same rows as sm90_load_query_block, a tensor per producer warp (warp 0 Q, 1 dO, 2 R, 3
// the row coefficients), so each thread keeps one tensor's addresses. Coefficients of rows
// past the sequence are zeros (not lse2 = inf): sm90_elementwise selects w = 0 for them
// before reading any.
__device__ __forceinline__ void ws_load_query_block(const PlxPrefillBwdParams& p, const BwdSequence& seq, int b,
                                                    int h, int m0, const Sm90BwdSmem& sm) {
  const bool packed = p.cu_seqlens_q != nullptr;
  const int valid = max(0, min(kBlockM, seq.lq - m0));
  const int i0 = min(m0, max(seq.lq - 1, 0));
  const int warp = threadIdx.x >> 5;
  if (warp < 3) {
    const PlxBwdRows& t = warp == 0 ? p.q : warp == 1 ? p.dout : p.r;
    if (warp == 2 && !kLearned) return;
    ws_load_rows<kBlockM, 32>(warp == 0 ? sm.q : warp == 1 ? sm.dout : sm.r,
                              static_cast<const plx_e16*>(t.data) + seq_row(t, packed, b, seq.q0, i0, h), t.stride_l,
                              valid);
    return;
  }
  static_assert(kCoefLse2 == 0 && kCoefTbar == 1 && kCoefU == 2 && kCoefKappa == 3 && kCoefDd == 4,
                "coefficient k of a row is sm.coef[k * kBlockM + row]");
#pragma unroll 1
  for (int e = threadIdx.x & 31; e < 5 * kBlockM; e += 32) {
    const int k = e / kBlockM, row = e % kBlockM;
    const bool ok = m0 + row < seq.lq;
    ws_cp_async<4>(plx_smem_addr(sm.coef + e),
                   p.row_coef + ((seq.q0 + (ok ? m0 + row : 0)) * kNumQHeads + h) * kCoefCount + k, ok);
  }
}

// ---- the producer warpgroup ---------------------------------------------------------------
// Each role derives the sequence and its steps after setmaxnreg: values live across the
// producer's release would have to fit its 24 registers.
__device__ __forceinline__ void ws_produce(const PlxPrefillBwdParams& p) {
  unsigned char* base = sm90_smem_base();
  const Sm90WsBars bars{reinterpret_cast<plx_u64*>(base + kSmemBars)};
  const int kvh = blockIdx.y, b = blockIdx.z, n0 = blockIdx.x * kBlockN;
  const BwdSequence seq = bwd_sequence(p, b);
  const Sm90BwdSteps st = sm90_bwd_steps(p, seq, n0);
  const Sm90BwdSmem sm = sm90_bwd_smem(base, 0);
  const bool kpacked = p.cu_seqlens_k != nullptr;
  const long long k_base = (kpacked ? seq.k0 * p.k.stride_l : b * p.k.stride_b) + kvh * p.k.stride_h;
  const long long v_base = (kpacked ? seq.k0 * p.v.stride_l : b * p.v.stride_b) + kvh * p.v.stride_h;
  const int kvalid = min(kBlockN, seq.lk - n0);
  if (threadIdx.x < 64)  // once per CTA: warps 0, 1 copy K, 2, 3 V
    ws_load_rows<kBlockN, 64>(sm.k, static_cast<const plx_e16*>(p.k.data) + k_base + n0 * p.k.stride_l,
                              p.k.stride_l, kvalid);
  else
    ws_load_rows<kBlockN, 64>(sm.v, static_cast<const plx_e16*>(p.v.data) + v_base + n0 * p.v.stride_l,
                              p.v.stride_l, kvalid);
  plx_cp_async_mbar_arrive_noinc(bars.kv());
#pragma unroll 1
  for (int t = 0; t < st.steps; ++t) {
    const int slot = t % kStages;
    plx_mbar_wait(bars.empty(slot), ((t / kStages) & 1) ^ 1);  // a fresh barrier passes parity 1
    ws_load_query_block(p, seq, b, st.head(kvh, t), st.row0(t), sm90_bwd_smem(base, slot));
    plx_cp_async_mbar_arrive_noinc(bars.full(slot));
  }
  plx_cp_async_commit();
  plx_cp_async_wait<0>();  // nothing of this thread's left in flight when it exits
}

// ---- a consumer warpgroup (cw = 0, 1) -----------------------------------------------------
__device__ __forceinline__ void ws_consume(const PlxPrefillBwdParams& p, int cw) {
  unsigned char* base = sm90_smem_base();
  const Sm90WsBars bars{reinterpret_cast<plx_u64*>(base + kSmemBars)};
  const int kvh = blockIdx.y, b = blockIdx.z, n0 = blockIdx.x * kBlockN;
  const BwdSequence seq = bwd_sequence(p, b);
  const Sm90BwdSteps st = sm90_bwd_steps(p, seq, n0);
  const int warp = (threadIdx.x >> 5) & 3;
  const int kg = cw % kKeyGroups, dsub = cw / kKeyGroups;
  const int krow0 = kg * kKeysPerWg + warp * 16;  // this warp's first key row in the block
  float dk[kDw / 2], dv[kDw / 2];
#pragma unroll
  for (int i = 0; i < kDw / 2; ++i) dk[i] = dv[i] = 0.f;
  if (st.steps > 0) plx_mbar_wait(bars.kv(), 0);
#pragma unroll 1
  for (int t = 0; t < st.steps; ++t) {
    const int slot = t % kStages, h = st.head(kvh, t), m0 = st.row0(t);
    Sm90BwdSmem cur = sm90_bwd_smem(base, slot);
    cur.ds1 += (t & 1) * kDsElems;  // dS double-buffered (the header)
    cur.ds2 += (t & 1) * kDsElems;
    plx_mbar_wait(bars.full(slot), (t / kStages) & 1);
    plx_fence_proxy_async();  // the producer's cp.async rows, before the wgmmas read them

    float s1[kBlockM / 2], s2[kBlockM / 2], g[kBlockM / 2];
    sm90_scores(s1, s2, g, cur, kg);
    sm90_elementwise(p, seq, cur, n0 + krow0, m0, s1, s2, g);
    Sm90AFrag a1, a2, ag;
    sm90_pack(s1, a1);
    if (kLearned) sm90_pack(s2, a2);
    sm90_pack(g, ag);
    sm90_issue_dkdv(dk, dv, a1, a2, ag, cur, dsub);
    if (dsub == 0) {  // under the dK, dV wgmmas
      sm90_store_ds(cur.ds1, a1, krow0);
      if (kLearned) sm90_store_ds(cur.ds2, a2, krow0);
    }
    plx_fence_proxy_async();  // the dS stores, before the other warpgroup's dQ wgmmas read them
    if (kDqBulk && warp == 0) plx_bulk_wait_read();  // the last step's slabs have left the stage
    plx_wgmma_wait<0>();
    plx_fence_regs(dk);
    plx_fence_regs(dv);
    sm90_fence_frag(a1);
    if (kLearned) sm90_fence_frag(a2);
    sm90_fence_frag(ag);
    // Every consumer thread arrives, not one lane a warp after __syncwarp: the release then
    // covers each thread's own reads of the slot's coefficients before the producer rewrites
    // them (compute-sanitizer's racecheck flagged the warp-elected arrival as a WAR hazard).
    plx_mbar_arrive(bars.empty(slot));
    plx_named_bar_sync(kDsBar, 256);                    // both warpgroups' dS are in
    sm90_dq(p, seq, cur, cw, h, m0);
  }
  if (kDqBulk && warp == 0) plx_bulk_wait_done();  // the stage outlives its last copy
  sm90_store_dkdv(p, seq, b, kvh, n0 + krow0, dsub, dk, dv);
}

// ---- the backward kernel (warp-specialized wgmma path) -----------------------------------
extern "C" __global__ void __launch_bounds__(kThreads, 1) plx_bwd_main(const PlxPrefillBwdParams p) {
  if ((int)blockIdx.x * kBlockN >= bwd_sequence(p, blockIdx.z).lk) return;  // the whole CTA, before any barrier
  const Sm90WsBars bars{reinterpret_cast<plx_u64*>(sm90_smem_base() + kSmemBars)};
  if (threadIdx.x == 0) {
    for (int s = 0; s < kStages; ++s) {
      plx_mbar_init(bars.full(s), kProducerThreads);  // one cp.async arrival per producer thread
      plx_mbar_init(bars.empty(s), 128 * kWgs);       // one arrival per consumer thread
    }
    plx_mbar_init(bars.kv(), kProducerThreads);
    plx_mbar_init_fence();
  }
  __syncthreads();
  const int wg = threadIdx.x >> 7;
  if (wg == 0) {
    plx_regs_release<kProducerRegs>();
    asm volatile("" ::: "memory");  // nothing loaded above stays live into 24 registers
    ws_produce(p);
  } else {
    plx_regs_acquire<kConsumerRegs>();
    ws_consume(p, wg - 1);
  }
}
