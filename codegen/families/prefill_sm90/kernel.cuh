// plx_prefill on Hopper (sm_90a), warp-specialized. A CTA owns a work tile (query tile, head,
// batch); persistent CTAs (kPersistent) fetch tiles from a counter until none is left.
// Warpgroup 0 produces: one warp loads the tile's [q; r] operands and streams the K/V tiles
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
  // Persistent: the work tile the producer fetched, published with q_full's arrival.
  __device__ __forceinline__ volatile int* work() const { return reinterpret_cast<volatile int*>(bar(2 + 4 * kStages)); }
};

// ---- the K/V side: kv_tma.cuh (contiguous tensors) or kv_pages.cuh (a paged cache) --------
// Defined after this file: the key range a work tile streams, the producer's K/V loads into
// the ring, and clearing a tile's rows past the sequence's keys before an MMA reads them.
__device__ __forceinline__ QueryTile kv_query_tile(const PlxPrefillParams& p, const Sequence& seq, int row0);
__device__ __forceinline__ void produce_kv(const PlxPrefillTmaParams& P, const Sm90Smem& sm, const Sequence& seq,
                                           const QueryTile& qt, int b, int kvh, int it);
__device__ __forceinline__ void clear_kv_tail(const Sequence& seq, plx_e16* tile, int t0, int cw);

// ---- the work tiles: (query tile, head, batch) ------------------------------------------
// A plain launch (grid: query tiles x heads x batch, x dispatched first) runs one tile per
// CTA: the CTAs resident together are neighbouring query tiles of a head or two, so the K/V
// they stream stays in L2, and the hardware hands the next tile to whichever CTA slot frees
// first. Persistent CTAs do the same with a tile counter in global memory (one wave; each
// fetches its next tile as soon as it releases the current one's q/r, so the next tile's
// q/r and K/V load under the current one's last MMAs and store). Their numbering groups
// units (a batch's kv head with its kGroup query heads) into sections whose K/V fits in
// kL2SectionBytes, longest causal rows first inside a section, its query heads inside.
// Measured with static striding: walking every head at once (132 heads' K/V live) read K/V
// from HBM and lost 7-19% to the plain launch.
constexpr long long kL2SectionBytes = 4ll << 20;
struct Work {
  int row0, h, b;
};
__device__ __forceinline__ int num_m(const PlxPrefillParams& p) { return (p.seqlen_q + kBlockM - 1) / kBlockM; }
__device__ __forceinline__ int num_work(const PlxPrefillParams& p) { return num_m(p) * kNumQHeads * p.batch; }
__device__ __forceinline__ Work work_of(const PlxPrefillParams& p, int i) {
  const int units = p.batch * (kNumQHeads / kGroup);
  const long long unit_bytes = (long long)max(p.seqlen_k, 1) * kHeadDim * 4;  // K and V, 16-bit
  const int per_section = (int)min((long long)units, max(1ll, kL2SectionBytes / unit_bytes));
  const int section_tiles = per_section * kGroup * num_m(p);
  const int sec = i / section_tiles, t = i % section_tiles;
  const int in_section = min(per_section, units - sec * per_section) * kGroup;  // the last may be short
  const int qh = t % in_section, unit = sec * per_section + qh / kGroup;
  const int b = unit / (kNumQHeads / kGroup), h = unit % (kNumQHeads / kGroup) * kGroup + qh % kGroup;
  return Work{(num_m(p) - 1 - t / in_section) * kBlockM, h, b};
}
__device__ __forceinline__ Work plain_work() {
  return Work{(int)(gridDim.x - 1 - blockIdx.x) * kBlockM, (int)blockIdx.y, (int)blockIdx.z};
}
// The next work tile of the launch, or n when none is left. Every CTA reads n exactly once;
// the last to do so zeroes both counters for the next launch (kernel_abi.h: work_counters).
__device__ __forceinline__ int fetch_work(int* counters, int n) {
  const int i = atomicAdd(counters, 1);
  if (i < n) return i;
  __threadfence();  // this CTA's last fetch lands before its retirement is counted
  if (atomicAdd(counters + 1, 1) == (int)gridDim.x - 1) {
    atomicExch(counters, 0);
    atomicExch(counters + 1, 0);
  }
  return n;
}
// Calls f(w, seq, qt, j, it) for each of this CTA's work tiles, counting work tiles (j) and
// K/V tiles (it) so every role's barrier phases agree. The producer (one warp; its lane 0
// fetches and publishes) takes a tile once the consumers have released the last one's q/r
// (q_empty) and publishes it with q_full; tiles past a packed sequence's end are skipped
// there, so consumers never see them.
// Each role runs its own copy: the producer's on kProducerRegs registers.
template <bool kProducer, typename F>
__device__ __forceinline__ void for_each_work(const PlxPrefillTmaParams& P, const Sm90Smem& sm, F f) {
  const PlxPrefillParams& p = P.p;
  if (!kPersistent) {  // one tile: no loop state kept live across the consumer's registers
    const Work w = plain_work();
    const Sequence seq = make_sequence(p, w.b, w.h);
    if (w.row0 >= seq.lq) return;
    if (!kProducer) plx_mbar_wait(sm.q_full(), 0);
    f(w, seq, kv_query_tile(p, seq, w.row0), 0, 0);
    return;
  }
  const int n = num_work(p);
  int it = 0;
#pragma unroll 1
  for (int j = 0;; ++j) {
    Work w;
    Sequence seq;
    if (kProducer) {
      plx_mbar_wait(sm.q_empty(), (j & 1) ^ 1);  // a fresh barrier passes parity 1
      int i;
      const bool lead = (threadIdx.x & 31) == 0;
      do {
        i = __shfl_sync(0xffffffffu, lead ? fetch_work(P.work_counters, n) : 0, 0);
        if (i == n) break;
        w = work_of(p, i);
        seq = make_sequence(p, w.b, w.h);
      } while (w.row0 >= seq.lq);
      if (lead) *sm.work() = i < n ? i : -1;
      if (i == n) {
        if (lead) plx_mbar_arrive(sm.q_full());  // wakes the consumers to the end
        return;
      }
    } else {
      plx_mbar_wait(sm.q_full(), j & 1);
      const int i = *sm.work();
      if (i < 0) return;
      w = work_of(p, i);
      seq = make_sequence(p, w.b, w.h);
    }
    const QueryTile qt = kv_query_tile(p, seq, w.row0);
    f(w, seq, qt, j, it);
    it += qt.num_tiles;
  }
}

// TMA coordinates of a sequence's token: packed sequences index the packed total (batch 0).
__device__ __forceinline__ int token_base(const int* cu_seqlens, int b) { return cu_seqlens ? cu_seqlens[b] : 0; }
__device__ __forceinline__ int batch_coord(const int* cu_seqlens, int b) { return cu_seqlens ? 0 : b; }

// ---- phase: produce (one thread), one work tile -----------------------------------------
// it: the CTA's K/V tiles so far (the ring's running count).
__device__ __forceinline__ void produce(const PlxPrefillTmaParams& P, const Sm90Smem& sm, const Sequence& seq,
                                        const QueryTile& qt, int b, int h, int it) {
  const PlxPrefillParams& p = P.p;
  const int qtok = token_base(p.cu_seqlens_q, b) + qt.row0, qb = batch_coord(p.cu_seqlens_q, b);
  if ((threadIdx.x & 31) == 0) {  // lane 0 loads q/r
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
  }
  produce_kv(P, sm, seq, qt, b, h / kGroup, it);
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
                                           float rq, int wrow0, int b, int h) {
  const int lane = threadIdx.x & 31, g = lane >> 2, c = 2 * (lane & 3);
#pragma unroll
  for (int hh = 0; hh < (kLearned ? 1 : 2); ++hh) {
    const float d1 = kLearned ? st.d1[0][0] : plx_quad_sum(st.d1[0][hh]);
    const float centre = kLearned ? st.c[0] : 0.f;
    const int qi = wrow0 + (kLearned ? g : g + 8 * hh);
    if (qi < seq.lq) {
      if ((lane & 3) == 0) store_row_stats(p, seq.stats + qi, st.m[0][hh], d1, centre);  // the centre is tbar
      plx_e16* o = seq.out + (long long)qi * p.o_stride_l;
#pragma unroll
      for (int n = 0; n < kHeadDim / 8; ++n) {
        const float x0 = finalize(st.o[0][n][2 * hh], kLearned ? st.o[0][n][2] : 0.f, d1, 0.f, centre, rq, p.eps);
        const float x1 = finalize(st.o[0][n][2 * hh + 1], kLearned ? st.o[0][n][3] : 0.f, d1, 0.f, centre, rq, p.eps);
        *reinterpret_cast<plx_u32*>(o + n * 8 + c) = plx_pack2(x0, x1);
      }
      if (p.vbar) {  // the softmax output O1/d1 (zeros without a visible key)
        plx_e16* vb = vbar_row(p, b, h, qi);
        const float inv = d1 == 0.f ? 0.f : 1.f / d1;
#pragma unroll
        for (int n = 0; n < kHeadDim / 8; ++n)
          *reinterpret_cast<plx_u32*>(vb + n * 8 + c) = plx_pack2(st.o[0][n][2 * hh] * inv, st.o[0][n][2 * hh + 1] * inv);
      }
    }
  }
}

// Independent max/sum chains in the softmax: a consumer warp has its sub-partition nearly to
// itself, so the softmax's latency, not its issue count, is what the other warpgroup's MMAs
// must cover.
constexpr int kSoftmaxChains = kHeadDim >= 256 ? 1 : (kBlockN / 8) % 4 == 0 ? 4 : 2;
// Skipping the scaling of O when no row's max moved (a warp vote per tile) measured: softmax
// 6% faster at head_dim 64 and Parallax 3% at 256, but Parallax 0.5-4% slower below 256.
constexpr bool kSkipIdleRescale = !kLearned || kHeadDim >= 256;
struct PlxFalse { static constexpr bool value = false; };
struct PlxTrue { static constexpr bool value = true; };

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
                                        const QueryTile& qt, int cw, int j, int it, int b, int h) {
  const int warp = (threadIdx.x / 32) % 4, lane = threadIdx.x & 31;
  const int wrow0 = qt.row0 + cw * kQueriesPerWg + warp * kUnits;  // this warp's first query row
  const plx_e16* tile = sm.qr(cw);
  const plx_u64 desc_qr = plx_wgmma_desc_sw128(tile);
  const float rq = query_rq(tile, warp);  // q_full: the caller waited
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
  // The scale to log2 units goes into the exponent's FFMA (softmax_update); a floor keeps a
  // zero bandwidth (uniform weights) off -inf * 0 on masked keys and changes no weight.
  const float scale = fmaxf(p.scale_log2, 1e-30f);
  const auto softmax = [&](float (&s)[1][kBlockN / 8][4], int t, Rescale& r, WarpState& st, auto lag) {
    const int t0 = qt.lo + t * kBlockN;
    if (edge_tile(p, seq, qt, t0))
      mask_scores<kBlockN>(s, [&](int u, int key) { return visible_key(p, seq, wrow0 + u, t0 + key); });
    softmax_update<kBlockN, kSoftmaxChains, decltype(lag)::value, true>(s, st, r, scale);
  };

  WarpState st;
  state_init(st);
  CentreLag lag = {};
  if (qt.num_tiles == 0) {
    release(sm.q_empty());
  } else {
    if (kPingPong && cw == 1) plx_named_bar_arrive(1, 256);
    PFrag a;
    {
      float s[1][kBlockN / 8][4];
      plx_mbar_wait(sm.k_full(stage_of(0)), phase_of(0));
      if (qt.num_tiles == 1) clear_kv_tail(seq, sm.k(stage_of(0)), qt.lo, cw);
      turn_begin();
      issue_scores(s, desc_qr, sm.k(stage_of(0)));
      turn_end(false);
      plx_wgmma_wait<0>();
      plx_fence_regs(s_regs(s));
      release(sm.k_empty(stage_of(0)));
      if (qt.num_tiles == 1) release(sm.q_empty());
      Rescale r;
      softmax(s, 0, r, st, PlxFalse{});  // the exact centre; O is still zero: nothing to rescale
      pack_p(s, a);
    }
    for (int t = 1; t < qt.num_tiles; ++t) {
      float s[1][kBlockN / 8][4];
      plx_mbar_wait(sm.k_full(stage_of(t)), phase_of(t));
      if (t == qt.num_tiles - 1) clear_kv_tail(seq, sm.k(stage_of(t)), qt.lo + t * kBlockN, cw);
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
      softmax(s, t, r, st, PlxTrue{});
      plx_wgmma_wait<0>();  // P V of tile t - 1
      plx_fence_regs(o_regs(st));
      plx_fence_regs(p_regs(a));
      release(sm.v_empty(stage_of(t - 1)));
      rescale_o_lagged<kSkipIdleRescale>(st, r, lag);
      pack_p(s, a);
    }
    const int last = qt.num_tiles - 1;
    plx_mbar_wait(sm.v_full(stage_of(last)), phase_of(last));
    clear_kv_tail(seq, sm.v(stage_of(last)), qt.lo + last * kBlockN, cw);
    turn_begin();
    issue_pv(a, st, sm.v(stage_of(last)));
    turn_end(true);
    plx_wgmma_wait<0>();
    plx_fence_regs(o_regs(st));
    release(sm.v_empty(stage_of(last)));
    settle_centre(st, lag);
  }
  sm90_store(p, seq, st, rq, wrow0, b, h);
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
  if (wg == 0) {  // producer warpgroup: its first warp issues every load
    if (kRegRealloc) plx_regs_release<kProducerRegs>();
    if (threadIdx.x < 32)
      for_each_work<true>(P, sm, [&](const Work& w, const Sequence& seq, const QueryTile& qt, int j, int it) {
        produce(P, sm, seq, qt, w.b, w.h, it);
      });
  } else {
    if (kRegRealloc) plx_regs_acquire<kConsumerRegs>();
    for_each_work<false>(P, sm, [&](const Work& w, const Sequence& seq, const QueryTile& qt, int j, int it) {
      consume(p, sm, seq, qt, wg - 1, j, it, w.b, w.h);
    });
  }
}
