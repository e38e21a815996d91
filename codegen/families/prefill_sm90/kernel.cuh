// plx_prefill on Hopper (sm_90a), warp-specialized. A CTA owns a work tile (query tile, head,
// batch); persistent CTAs (kPersistent) walk every kPersistent-th tile, longest first.
// Warpgroup 0 produces: one thread loads the tile's [q; r] operands and streams the K/V tiles
// of its causal range into a kStages-deep ring with TMA; mbarriers say when q/r or a stage's
// K or V has landed (q_full, k_full, v_full) and when every consumer warp is done with them
// (q_empty after a work tile's last scores, k_empty once a tile's scores are in, v_empty once
// its P V is: K runs a tile ahead of V, the next work tile's q/r loads under the last MMAs).
// Warpgroups 1..kConsumers consume: each owns 64 MMA rows -- Parallax stacks the 8 q rows of
// 8 queries over their 8 r rows, so one thread holds s1 and s2 (and O1 and O2) of the same
// query, exactly the mma.sync layout mma_core.cuh works on -- and per K/V tile computes
// S = [q; r] K^T (wgmma, both operands in shared memory), the online softmax with the moving
// centre (mma_core.cuh), and [O1; O2] += [P1; P2] V (wgmma, P from registers, V MN-major).
// Needs: sequence.cuh (prefill), mma_core.cuh, finalize.cuh, sm90/async.cuh, sm90/wgmma.cuh,
// the generated plx_wgmma_scores (N = kBlockN) and plx_wgmma_pv (N = kHeadDim); kConsumers,
// kBlockM, kQueriesPerWg, kDChunks, kTileBytes, kSmem*, kRegRealloc, kPingPong, kPersistent
// (generator).

// ---- shared memory: [q; r] tiles, the K/V ring, the barriers ---------------------------
// Every operand is a sequence of 64-column chunks [rows][64] in the 128-byte swizzle TMA
// writes, each chunk 1024-byte aligned.
struct Sm90Smem {
  unsigned char* base;  // 1024-byte aligned
  __device__ __forceinline__ plx_e16* qr(int wg) const {
    return reinterpret_cast<plx_e16*>(base + kSmemQr) + wg * kDChunks * 64 * 64;
  }
  __device__ __forceinline__ plx_e16* k(int stage) const {
    return reinterpret_cast<plx_e16*>(base + kSmemRing + stage * 2 * kTileBytes);
  }
  __device__ __forceinline__ plx_e16* v(int stage) const { return k(stage) + kTileBytes / 2; }
  __device__ __forceinline__ plx_u64* bar(int i) const { return reinterpret_cast<plx_u64*>(base + kSmemBars) + i; }
  __device__ __forceinline__ plx_u64* q_full() const { return bar(0); }
  __device__ __forceinline__ plx_u64* k_full(int s) const { return bar(1 + s); }
  __device__ __forceinline__ plx_u64* v_full(int s) const { return bar(1 + kStages + s); }
  __device__ __forceinline__ plx_u64* k_empty(int s) const { return bar(1 + 2 * kStages + s); }
  __device__ __forceinline__ plx_u64* v_empty(int s) const { return bar(1 + 3 * kStages + s); }
  __device__ __forceinline__ plx_u64* q_empty() const { return bar(1 + 4 * kStages); }
};

// ---- the work tiles: (query tile, head, batch), longest causal rows first ----------------
// Tile i of gridDim-independent numbering: query tiles from the last (longest) down, heads and
// batches inside. A plain launch (grid: query tiles x heads x batch) runs one tile per CTA.
struct Work {
  int row0, h, b;
};
__device__ __forceinline__ int num_work(const PlxPrefillParams& p) {
  return (p.seqlen_q + kBlockM - 1) / kBlockM * kNumQHeads * p.batch;
}
__device__ __forceinline__ Work work_of(const PlxPrefillParams& p, int i) {
  const int per_row = kNumQHeads * p.batch, num_m = (p.seqlen_q + kBlockM - 1) / kBlockM;
  const int r = i % per_row;
  return Work{(num_m - 1 - i / per_row) * kBlockM, r % kNumQHeads, r / kNumQHeads};
}
__device__ __forceinline__ int first_work() {
  return kPersistent ? blockIdx.x : (blockIdx.x * gridDim.z + blockIdx.z) * gridDim.y + blockIdx.y;
}
__device__ __forceinline__ int work_stride(const PlxPrefillParams& p) { return kPersistent ? gridDim.x : num_work(p); }
// Calls f(seq, qt, j, it) for each of this CTA's work tiles, counting work tiles (j) and K/V
// tiles (it) so every role's barrier phases agree; tiles past a packed sequence's end are
// skipped. Each role runs its own copy: the producer's on kProducerRegs registers.
template <typename F>
__device__ __forceinline__ void for_each_work(const PlxPrefillParams& p, F f) {
  const auto one = [&](int i, int j, int it) {
    const Work w = work_of(p, i);
    const Sequence seq = make_sequence(p, w.b, w.h);
    if (w.row0 >= seq.lq) return 0;
    const QueryTile qt = query_tile(p, seq, w.row0);
    f(w, seq, qt, j, it);
    return qt.num_tiles + 1;  // K/V tiles walked, plus one: the work tile was not skipped
  };
  if (!kPersistent) {  // one tile: no loop state kept live across the consumer's registers
    one(first_work(), 0, 0);
    return;
  }
  int j = 0, it = 0;
  for (int i = first_work(); i < num_work(p); i += work_stride(p))
    if (const int walked = one(i, j, it); walked > 0) {
      ++j;
      it += walked - 1;
    }
}

// TMA coordinates of a sequence's token: packed sequences index the packed total (batch 0).
__device__ __forceinline__ int token_base(const int* cu_seqlens, int b) { return cu_seqlens ? cu_seqlens[b] : 0; }
__device__ __forceinline__ int batch_coord(const int* cu_seqlens, int b) { return cu_seqlens ? 0 : b; }

// ---- phase: produce (one thread), one work tile -----------------------------------------
// j: the CTA's work tiles so far; it: its K/V tiles so far (the ring's running count).
__device__ __forceinline__ void produce(const PlxPrefillTmaParams& P, const Sm90Smem& sm, const QueryTile& qt,
                                        int b, int h, int j, int it) {
  const PlxPrefillParams& p = P.p;
  const int qtok = token_base(p.cu_seqlens_q, b) + qt.row0, qb = batch_coord(p.cu_seqlens_q, b);
  plx_mbar_wait(sm.q_empty(), (j & 1) ^ 1);  // a fresh barrier passes parity 1
  plx_mbar_arrive_expect_tx(sm.q_full(), kConsumers * kDChunks * 64 * 64 * 2);
#pragma unroll 1
  for (int wg = 0; wg < kConsumers; ++wg)
    for (int c = 0; c < kDChunks; ++c) {
      plx_e16* dst = sm.qr(wg) + c * 64 * 64;
      const int tok = qtok + wg * kQueriesPerWg;
      if (kLearned) {
        for (int g = 0; g < 4; ++g) {  // MMA rows 16g..16g+7: q of queries 8g..; 16g+8..: their r
          plx_tma_load_4d(dst + 16 * g * 64, &P.tq, sm.q_full(), c * 64, h, tok + 8 * g, qb);
          plx_tma_load_4d(dst + (16 * g + 8) * 64, &P.tr, sm.q_full(), c * 64, h, tok + 8 * g, qb);
        }
      } else {
        plx_tma_load_4d(dst, &P.tq, sm.q_full(), c * 64, h, tok, qb);
      }
    }
  const int ktok = token_base(p.cu_seqlens_k, b) + qt.lo, kb = batch_coord(p.cu_seqlens_k, b);
  const int kvh = h / kGroup;
  // Not unrolled: the producer runs on kProducerRegs registers.
#pragma unroll 1
  for (int t = 0; t < qt.num_tiles; ++t) {
    const int stage = (it + t) % kStages;
    const int parity = (((it + t) / kStages) & 1) ^ 1;
    plx_mbar_wait(sm.k_empty(stage), parity);
    plx_mbar_arrive_expect_tx(sm.k_full(stage), kTileBytes);
    for (int c = 0; c < kDChunks; ++c)
      plx_tma_load_4d(sm.k(stage) + c * kBlockN * 64, &P.tk, sm.k_full(stage), c * 64, kvh, ktok + t * kBlockN, kb);
    plx_mbar_wait(sm.v_empty(stage), parity);
    plx_mbar_arrive_expect_tx(sm.v_full(stage), kTileBytes);
    for (int c = 0; c < kDChunks; ++c)
      plx_tma_load_4d(sm.v(stage) + c * kBlockN * 64, &P.tv, sm.v_full(stage), c * 64, kvh, ktok + t * kBlockN, kb);
  }
}

// The accumulators as the flat register arrays the wgmma wrappers take.
__device__ __forceinline__ float (&s_regs(float (&s)[1][kBlockN / 8][4]))[kBlockN / 2] {
  return *reinterpret_cast<float(*)[kBlockN / 2]>(&s[0][0][0]);
}
__device__ __forceinline__ float (&o_regs(WarpState& st))[kHeadDim / 2] {
  return *reinterpret_cast<float(*)[kHeadDim / 2]>(&st.o[0][0][0]);
}

// ---- phase: scores  S = [q; r] K^T over one K tile (issued; the caller waits) -----------
// Along the head dim, 16 elements are +32 bytes inside a 128-byte row and a whole chunk
// further past every 64.
__device__ __forceinline__ plx_u64 k_step(int kk, int chunk_bytes) {
  return plx_u64(((kk / 4) * chunk_bytes + (kk % 4) * 32) >> 4);
}
__device__ __forceinline__ void issue_scores(float (&s)[1][kBlockN / 8][4], plx_u64 desc_qr, const plx_e16* sk) {
  float(&acc)[kBlockN / 2] = s_regs(s);
  const plx_u64 desc_k = plx_wgmma_desc_sw128(sk);
  plx_wgmma_fence();
#pragma unroll
  for (int kk = 0; kk < kHeadDim / 16; ++kk)
    plx_wgmma_scores(acc, desc_qr + k_step(kk, 64 * 128), desc_k + k_step(kk, kBlockN * 128), kk > 0);
  plx_wgmma_commit();
}
// s1 in log2 units (exp2 later); s2 (Parallax rows 8..15) stays unscaled.
__device__ __forceinline__ void scale_scores(float (&s)[1][kBlockN / 8][4], float scale_log2) {
#pragma unroll
  for (int n = 0; n < kBlockN / 8; ++n)
#pragma unroll
    for (int e = 0; e < (kLearned ? 2 : 4); ++e) s[0][n][e] *= scale_log2;
}

// ---- phase: accumulate  [O1; O2] += [P1; P2] V (issued; the caller waits) ---------------
// P as the register A operand; the asynchronous MMA reads it, so it stays untouched until
// the wait.
typedef plx_u32 PFrag[kBlockN / 16][4];
__device__ __forceinline__ plx_u32 (&p_regs(PFrag& a))[kBlockN / 4] {
  return *reinterpret_cast<plx_u32(*)[kBlockN / 4]>(&a[0][0]);
}
__device__ __forceinline__ void pack_p(const float (&s)[1][kBlockN / 8][4], PFrag& a) {
#pragma unroll
  for (int kb = 0; kb < kBlockN / 16; ++kb) {
    a[kb][0] = plx_pack2(s[0][2 * kb][0], s[0][2 * kb][1]);
    a[kb][1] = plx_pack2(s[0][2 * kb][2], s[0][2 * kb][3]);
    a[kb][2] = plx_pack2(s[0][2 * kb + 1][0], s[0][2 * kb + 1][1]);
    a[kb][3] = plx_pack2(s[0][2 * kb + 1][2], s[0][2 * kb + 1][3]);
  }
}
__device__ __forceinline__ void issue_pv(const PFrag& a, WarpState& st, const plx_e16* sv) {
  float(&acc)[kHeadDim / 2] = o_regs(st);
  plx_fence_regs(acc);
  const plx_u64 desc_v = plx_wgmma_desc_sw128_mn(sv, kBlockN * 128);
  plx_wgmma_fence();
#pragma unroll
  for (int kb = 0; kb < kBlockN / 16; ++kb) plx_wgmma_pv(acc, a[kb], desc_v + plx_u64(kb * 2048 >> 4));
  plx_wgmma_commit();
}

// ---- phase: store -- each lane finalizes two adjacent columns of its query rows ----------
// r.q for the amplified affine comes from the swizzled operand tile (q row g, r row g + 8).
__device__ __forceinline__ float qr_elem(const plx_e16* tile, int row, int d) {
  const int c = d / 64, col = d % 64;
  return plx_to_float(tile[c * 64 * 64 + row * 64 + (((col / 8) ^ (row % 8)) * 8) + col % 8]);
}
// r.q of this thread's query (amplified affine), read while the operand tile is resident.
__device__ __forceinline__ float query_rq(const plx_e16* tile, int warp) {
  if (!(kLearned && kAmplified)) return 0.f;
  const int lane = threadIdx.x & 31, g = lane >> 2;
  float part = 0.f;  // the quad splits the head dim
  for (int d = lane & 3; d < kHeadDim; d += 4)
    part += qr_elem(tile, 16 * warp + g, d) * qr_elem(tile, 16 * warp + g + 8, d);
  return plx_quad_sum(part);
}
__device__ __forceinline__ void sm90_store(const PlxPrefillParams& p, const Sequence& seq, const WarpState& st,
                                           float rq, int wrow0) {
  const int lane = threadIdx.x & 31, g = lane >> 2, c = 2 * (lane & 3);
#pragma unroll
  for (int hh = 0; hh < (kLearned ? 1 : 2); ++hh) {
    const float d1 = kLearned ? st.d1[0][0] : plx_quad_sum(st.d1[0][hh]);
    const float centre = kLearned ? st.c[0] : 0.f;
    const int qi = wrow0 + (kLearned ? g : g + 8 * hh);
    if (qi < seq.lq) {
      plx_e16* o = seq.out + (long long)qi * p.o_stride_l;
#pragma unroll
      for (int n = 0; n < kHeadDim / 8; ++n) {
        const float x0 = finalize(st.o[0][n][2 * hh], kLearned ? st.o[0][n][2] : 0.f, d1, 0.f, centre, rq, p.eps);
        const float x1 = finalize(st.o[0][n][2 * hh + 1], kLearned ? st.o[0][n][3] : 0.f, d1, 0.f, centre, rq, p.eps);
        *reinterpret_cast<plx_u32*>(o + n * 8 + c) = plx_pack2(x0, x1);
      }
    }
  }
}

// ---- phase: consume one work tile (a consumer warpgroup) ----------------------------------
// The scores of K/V tile t are issued before the P V of tile t - 1, so the softmax of tile t
// runs while the tensor cores accumulate tile t - 1; O is rescaled once that has landed.
// Tile 0 is peeled so no branch inside the loop decides whether a P V is in flight: ptxas
// tracks the MMAs per path and would serialize them otherwise (C7514).
// Ping-pong: consumer cw issues its MMAs only in its turn (named barrier 1 + cw) and hands
// the turn over as soon as they are issued, so the tensor cores run one warpgroup's MMAs
// while the other computes its softmax. Each warpgroup has num_tiles + 1 turns a work tile;
// warpgroup 1 gives warpgroup 0 the first and keeps its own last, so every barrier balances.
__device__ __forceinline__ void consume(const PlxPrefillParams& p, const Sm90Smem& sm, const Sequence& seq,
                                        const QueryTile& qt, int cw, int j, int it) {
  const int warp = (threadIdx.x / 32) % 4, lane = threadIdx.x & 31;
  const int wrow0 = qt.row0 + cw * kQueriesPerWg + warp * kUnits;  // this warp's first query row
  const plx_e16* tile = sm.qr(cw);
  const plx_u64 desc_qr = plx_wgmma_desc_sw128(tile);
  plx_mbar_wait(sm.q_full(), j & 1);
  const float rq = query_rq(tile, warp);
  const auto release = [&](plx_u64* empty) {  // this warp is done with q/r, a K or a V tile
    __syncwarp();
    if (lane == 0) plx_mbar_arrive(empty);
  };
  const auto turn_begin = [&] {
    if (kPingPong) plx_named_bar_sync(1 + cw, 256);
  };
  const auto turn_end = [&](bool last) {
    if (kPingPong && !(last && cw == 1)) plx_named_bar_arrive(2 - cw, 256);
  };
  const auto stage_of = [&](int t) { return (it + t) % kStages; };
  const auto phase_of = [&](int t) { return ((it + t) / kStages) & 1; };
  const auto softmax = [&](float (&s)[1][kBlockN / 8][4], int t, Rescale& r, WarpState& st) {
    const int t0 = qt.lo + t * kBlockN;
    scale_scores(s, p.scale_log2);
    if (edge_tile(p, seq, qt, t0))
      mask_scores<kBlockN>(s, [&](int u, int key) { return visible_key(p, seq, wrow0 + u, t0 + key); });
    softmax_update<kBlockN>(s, st, r);
  };

  WarpState st;
  state_init(st);
  if (qt.num_tiles == 0) {
    release(sm.q_empty());
  } else {
    if (kPingPong && cw == 1) plx_named_bar_arrive(1, 256);
    PFrag a;
    {
      float s[1][kBlockN / 8][4];
      plx_mbar_wait(sm.k_full(stage_of(0)), phase_of(0));
      turn_begin();
      issue_scores(s, desc_qr, sm.k(stage_of(0)));
      turn_end(false);
      plx_wgmma_wait<0>();
      plx_fence_regs(s_regs(s));
      release(sm.k_empty(stage_of(0)));
      if (qt.num_tiles == 1) release(sm.q_empty());
      Rescale r;
      softmax(s, 0, r, st);  // O is still zero: nothing to rescale
      pack_p(s, a);
    }
    for (int t = 1; t < qt.num_tiles; ++t) {
      float s[1][kBlockN / 8][4];
      plx_mbar_wait(sm.k_full(stage_of(t)), phase_of(t));
      plx_mbar_wait(sm.v_full(stage_of(t - 1)), phase_of(t - 1));
      turn_begin();
      issue_scores(s, desc_qr, sm.k(stage_of(t)));
      issue_pv(a, st, sm.v(stage_of(t - 1)));
      turn_end(false);
      plx_wgmma_wait<1>();  // the scores of tile t (committed first)
      plx_fence_regs(s_regs(s));
      release(sm.k_empty(stage_of(t)));
      if (t == qt.num_tiles - 1) release(sm.q_empty());  // the next work tile's q/r may load
      Rescale r;
      softmax(s, t, r, st);
      plx_wgmma_wait<0>();  // P V of tile t - 1
      plx_fence_regs(o_regs(st));
      plx_fence_regs(p_regs(a));
      release(sm.v_empty(stage_of(t - 1)));
      rescale_o(st, r);
      pack_p(s, a);
    }
    const int last = qt.num_tiles - 1;
    plx_mbar_wait(sm.v_full(stage_of(last)), phase_of(last));
    turn_begin();
    issue_pv(a, st, sm.v(stage_of(last)));
    turn_end(true);
    plx_wgmma_wait<0>();
    plx_fence_regs(o_regs(st));
    release(sm.v_empty(stage_of(last)));
  }
  sm90_store(p, seq, st, rq, wrow0);
}

// ---- the kernel ---------------------------------------------------------------------------
extern "C" __global__ void __launch_bounds__(kThreads, 1) plx_prefill(const __grid_constant__ PlxPrefillTmaParams P) {
  const PlxPrefillParams& p = P.p;
  extern __shared__ unsigned char smem_raw[];
  const plx_u32 raw = plx_smem_addr(smem_raw);
  const Sm90Smem sm{smem_raw + ((raw + 1023) / 1024 * 1024 - raw)};
  if (threadIdx.x == 0) {
    plx_mbar_init(sm.q_full(), 1);
    plx_mbar_init(sm.q_empty(), 4 * kConsumers);  // one arrival per consumer warp
    for (int s = 0; s < kStages; ++s) {
      plx_mbar_init(sm.k_full(s), 1);
      plx_mbar_init(sm.v_full(s), 1);
      plx_mbar_init(sm.k_empty(s), 4 * kConsumers);
      plx_mbar_init(sm.v_empty(s), 4 * kConsumers);
    }
    plx_mbar_init_fence();
  }
  __syncthreads();

  const int wg = threadIdx.x / 128;
  if (wg == 0) {  // producer warpgroup: one thread issues every load
    if (kRegRealloc) plx_regs_release<kProducerRegs>();
    if (threadIdx.x == 0)
      for_each_work(p, [&](const Work& w, const Sequence&, const QueryTile& qt, int j, int it) {
        produce(P, sm, qt, w.b, w.h, j, it);
      });
  } else {
    if (kRegRealloc) plx_regs_acquire<kConsumerRegs>();
    for_each_work(p, [&](const Work&, const Sequence& seq, const QueryTile& qt, int j, int it) {
      consume(p, sm, seq, qt, wg - 1, j, it);
    });
  }
}
