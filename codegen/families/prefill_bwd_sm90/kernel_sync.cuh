// plx_bwd_main on sm_90a without warp specialization (schedule warps 4 or 8): every thread
// loads with cp.async and one CTA barrier ring paces the steps, as the mma.sync kernel does;
// the speed-up over it comes from wgmma's 64-row tiles and asynchronous issue. Per step: the
// first barrier shows the step's rows landed, the middle one that dS is stored (and the dK, dV
// wgmmas, the ring slot's last readers, landed) before the dQ^T wgmmas read it.
// Needs: kernel.cuh (the phases).

static_assert(!kWarpSpecialized && kDsSlots == 1, "kernel_ws.cuh runs the warp-specialized schedules");

// ---- the backward kernel (wgmma path) -----------------------------------------------------
extern "C" __global__ void __launch_bounds__(kThreads, 1) plx_bwd_main(const PlxPrefillBwdParams p) {
  extern __shared__ unsigned char smem_raw[];
  const plx_u32 raw = plx_smem_addr(smem_raw);
  unsigned char* base = smem_raw + ((raw + 1023) / 1024 * 1024 - raw);
  const Sm90BwdSmem sm = sm90_bwd_smem(base, 0);
  const int kvh = blockIdx.y, b = blockIdx.z;
  const int wg = threadIdx.x >> 7, warp = (threadIdx.x >> 5) & 3;
  const BwdSequence seq = bwd_sequence(p, b);
  const int n0 = blockIdx.x * kBlockN;
  if (n0 >= seq.lk) return;
  const bool kpacked = p.cu_seqlens_k != nullptr;
  const int kg = wg % kKeyGroups, dsub = wg / kKeyGroups;
  const int krow0 = kg * kKeysPerWg + warp * 16;  // this warp's first key row in the block

  // phase: this block's K and V (keys past the sequence zero-filled)
  const long long k_base = (kpacked ? seq.k0 * p.k.stride_l : b * p.k.stride_b) + kvh * p.k.stride_h;
  const long long v_base = (kpacked ? seq.k0 * p.v.stride_l : b * p.v.stride_b) + kvh * p.v.stride_h;
  const int kvalid = min(kBlockN, seq.lk - n0);
  load_rows_sw128<kBlockN>(sm.k, static_cast<const plx_e16*>(p.k.data) + k_base + n0 * p.k.stride_l, p.k.stride_l,
                           kvalid);
  load_rows_sw128<kBlockN>(sm.v, static_cast<const plx_e16*>(p.v.data) + v_base + n0 * p.v.stride_l, p.v.stride_l,
                           kvalid);
  plx_cp_async_commit();

  const Sm90BwdSteps st = sm90_bwd_steps(p, seq, n0);
  const int steps = st.steps;
  auto load_step = [&](int t) {  // one cp.async group per step, into ring slot t % kStages
    sm90_load_query_block(p, seq, b, st.head(kvh, t), st.row0(t), sm90_bwd_smem(base, t % kStages));
  };

  float dk[kDw / 2], dv[kDw / 2];
#pragma unroll
  for (int i = 0; i < kDw / 2; ++i) dk[i] = dv[i] = 0.f;

  // Ring of kStages steps (kernel_mma.cuh's): step t + kStages - 1 loads while step t
  // computes. A slot is refilled a step after its last reader (the dK, dV wgmmas, landed
  // before the step's middle barrier; the dQ wgmmas read K and dS only).
#pragma unroll 1
  for (int t = 0; t < kStages - 1 && t < steps; ++t) load_step(t);
#pragma unroll 1
  for (int t = 0; t < steps; ++t) {
    const int h = st.head(kvh, t), m0 = st.row0(t);
    const Sm90BwdSmem cur = sm90_bwd_smem(base, t % kStages);
    if (t + kStages - 1 < steps) load_step(t + kStages - 1);
    else plx_cp_async_commit();  // an empty group keeps the count of groups in flight fixed
    plx_cp_async_wait<kStages - 1>();
    plx_fence_proxy_async();  // this thread's cp.async rows, before the wgmmas read them
    __syncthreads();

    float s1[kBlockM / 2], s2[kBlockM / 2], g[kBlockM / 2];
    sm90_scores(s1, s2, g, cur, kg);
    sm90_elementwise(p, seq, cur, n0 + krow0, m0, s1, s2, g);
    Sm90AFrag a1, a2, ag;
    sm90_pack(s1, a1);
    if (kLearned) sm90_pack(s2, a2);
    sm90_pack(g, ag);
    sm90_issue_dkdv(dk, dv, a1, a2, ag, cur, dsub);
    if (dsub == 0) {  // under the dK, dV wgmmas (they only read a1, a2); kDSplit warpgroups hold the same dS
      sm90_store_ds(cur.ds1, a1, krow0);
      if (kLearned) sm90_store_ds(cur.ds2, a2, krow0);
    }
    plx_fence_proxy_async();  // the dS stores, before the dQ wgmmas read them
    if (kDqBulk && (threadIdx.x & 127) < 32) plx_bulk_wait_read();  // the last step's slabs have left the stage
    // dK, dV land before the barrier: the A fragments then die before the dQ accumulators
    // are live (waiting after the dQ wgmmas instead spills at head_dim 128, block_m 64).
    plx_wgmma_wait<0>();
    plx_fence_regs(dk);
    plx_fence_regs(dv);
    sm90_fence_frag(a1);
    if (kLearned) sm90_fence_frag(a2);
    sm90_fence_frag(ag);
    __syncthreads();

    // After the middle barrier nothing reads the ring slot (the dQ wgmmas read K and dS, and
    // dS is rewritten only after the next step's first barrier): no closing barrier.
    sm90_dq(p, seq, cur, wg, h, m0);
  }
  plx_cp_async_wait<0>();  // a block no query row sees still has its K/V copies in flight
  if (kDqBulk && (threadIdx.x & 127) < 32) plx_bulk_wait_done();  // the stage outlives its last copy

  sm90_store_dkdv(p, seq, b, kvh, n0 + krow0, dsub, dk, dv);
}
