// plx_bwd_main on the tensor cores, FlashAttention-2's backward shape. CTA (key block, kv
// head, sequence) keeps kBlockN keys' K and V in shared memory and their dK, dV in registers,
// and walks every query block of kBlockM rows that sees a key of the block, for each query
// head of the GQA group (so dK, dV sum over the group without atomics). Warp w owns the
// 16-key band w % kBands (kDSplit warps share a band at head_dim 256, each with its own
// columns of dK and dV). Per step, with the transposed scores (keys as MMA rows):
//   S1^T = K Q^T, S2^T = K R^T, G^T = V dO^T  ->  w, c, ds1, ds2 (docs/backward.md)
//   dV += C^T dO,  dK += (tau dS1)^T Q + dS2^T R        (A operands from registers)
//   dQ += tau dS1 K, dR += dS2 K                        (dS through shared memory; dq_reduce.cuh)
// Query blocks stream through a ring of kStages slots (2: the next step's rows load under
// this step's math).
// Needs: sequence.cuh, rows.cuh (BwdCoef), dq_reduce.cuh, tile_loader.cuh (plx_swz,
// load_kv_tile), kv_contiguous.cuh (KvSource), mma_sync.cuh; kBlockM, kBlockN, kDSplit, kDsLd,
// kSmemBytes (generator).

constexpr int kBands = kWarps / kDSplit;   // 16-key bands
constexpr int kDw = kHeadDim / kDSplit;    // dK / dV columns per warp
constexpr int kQN = kBlockM / 8;           // 8-query column tiles of the transposed scores
static_assert(kBlockN == 16 * kBands, "one 16-key band per warp (per kDSplit warps)");
static_assert(kDw % 16 == 0 && kBlockM % 16 == 0, "whole MMA tiles");
// The shared tile parameters as this family fills them (source.cc Tiling): the ring holds
// kStages steps' query rows (Q, R, dO, coefficients), not K/V tiles.
static_assert(kSmemRingOffset == 0 && kUnits == kBlockM && kMTiles == kBlockM / 16, "the backward's tiling");

// Shared memory, in GeometryOf's order (source.cc): K, V; kStages x [Q, (R), dO]; dS1, (dS2);
// kStages x the step's 5 x kBlockM row coefficients (floats); bulk / det: the staged dQ, (dR)
// rows, kBlockM x kStageLd floats each.
constexpr int kTileKv = kBlockN * kHeadDim;
constexpr int kTileQ = kBlockM * kHeadDim;
constexpr int kTileDs = kBlockN * kDsLd;
constexpr int kStepRows = (kLearned ? 3 : 2) * kTileQ;      // one step's Q, (R), dO
constexpr int kOffRing = 2 * kTileKv;
constexpr int kOffDs1 = kOffRing + kStages * kStepRows;
constexpr int kOffDs2 = kOffDs1 + kTileDs;                   // probe learned only
constexpr int kOffCoef = kOffDs2 + (kLearned ? kTileDs : 0);  // 16-bit elements; the floats follow
constexpr int kOffStageBytes = kOffCoef * 2 + kStages * 5 * kBlockM * 4;
static_assert(kOffStageBytes + (kDqStaged ? (kLearned ? 2 : 1) * kBlockM * kStageLd * 4 : 0) == kSmemBytes,
              "the generator's shared-memory size");

struct BwdSmem {
  plx_e16* k; plx_e16* v; plx_e16* q; plx_e16* r; plx_e16* dout; plx_e16* ds1; plx_e16* ds2;
  float* coef;   // [5][kBlockM]: lse2, tbar, u, kappa, Dd of the step's rows
  float* stage;  // bulk / det: [kBlockM][kStageLd] dQ rows, then as many dR rows
};
// The view of ring slot `slot`: its Q, R, dO and coefficients; K, V and dS are shared.
__device__ __forceinline__ BwdSmem bwd_smem(unsigned char* smem, int slot) {
  plx_e16* base = reinterpret_cast<plx_e16*>(smem);
  plx_e16* ring = base + kOffRing + slot * kStepRows;
  return BwdSmem{base, base + kTileKv, ring, ring + kTileQ, ring + (kLearned ? 2 : 1) * kTileQ,
                 base + kOffDs1, base + kOffDs2, reinterpret_cast<float*>(base + kOffCoef) + slot * 5 * kBlockM,
                 reinterpret_cast<float*>(smem + kOffStageBytes)};
}

// ---- phase: load the step's query rows: Q, (R), dO and their coefficients ----------------
__device__ __forceinline__ void load_query_block(const PlxPrefillBwdParams& p, const BwdSequence& seq, int b,
                                                 int h, int m0, const BwdSmem& sm) {
  const bool packed = p.cu_seqlens_q != nullptr;
  for (int x = threadIdx.x; x < kBlockM * kChunks; x += kThreads) {
    const int row = x / kChunks, c = x % kChunks;
    const int i = m0 + row;
    const bool valid = i < seq.lq;
    const int ii = valid ? i : 0;  // a real row's address even when zero-filling
    const plx_e16* gq = static_cast<const plx_e16*>(p.q.data) + seq_row(p.q, packed, b, seq.q0, ii, h);
    const plx_e16* gd = static_cast<const plx_e16*>(p.dout.data) + seq_row(p.dout, packed, b, seq.q0, ii, h);
    plx_cp_async16(sm.q + plx_swz(row, c), gq + c * 8, valid);
    plx_cp_async16(sm.dout + plx_swz(row, c), gd + c * 8, valid);
    if (kLearned) {
      const plx_e16* gr = static_cast<const plx_e16*>(p.r.data) + seq_row(p.r, packed, b, seq.q0, ii, h);
      plx_cp_async16(sm.r + plx_swz(row, c), gr + c * 8, valid);
    }
  }
  for (int row = threadIdx.x; row < kBlockM; row += kThreads) {
    const int i = m0 + row;
    const float* c = p.row_coef + ((seq.q0 + i) * kNumQHeads + h) * kCoefCount;
    const bool valid = i < seq.lq;
    sm.coef[0 * kBlockM + row] = valid ? c[kCoefLse2] : PLX_INF;
    sm.coef[1 * kBlockM + row] = valid ? c[kCoefTbar] : 0.f;
    sm.coef[2 * kBlockM + row] = valid ? c[kCoefU] : 0.f;
    sm.coef[3 * kBlockM + row] = valid ? c[kCoefKappa] : 0.f;
    sm.coef[4 * kBlockM + row] = valid ? c[kCoefDd] : 0.f;
  }
  plx_cp_async_commit();
}

// ---- phase: transposed scores  x[key][query] = A[band keys] . B[query rows] over D ---------
template <bool kTwo>
__device__ __forceinline__ void band_scores(float (&x)[kQN][4], float (&y)[kQN][4], const plx_e16* sa,
                                            const plx_e16* sb, const plx_e16* sb2, int band) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int n = 0; n < kQN; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) x[n][e] = y[n][e] = 0.f;
#pragma unroll
  for (int ks = 0; ks < kHeadDim / 16; ++ks) {
    plx_u32 a[4];
    plx_ldmatrix_x4(a, sa + plx_swz(band * 16 + (lane & 15), 2 * ks + (lane >> 4)));
#pragma unroll
    for (int nb = 0; nb < kBlockM / 16; ++nb) {
      const int brow = nb * 16 + ((lane >> 4) << 3) + (lane & 7), bchunk = 2 * ks + ((lane >> 3) & 1);
      plx_u32 b[4];
      plx_ldmatrix_x4(b, sb + plx_swz(brow, bchunk));
      plx_mma(x[2 * nb], a, b[0], b[1]);
      plx_mma(x[2 * nb + 1], a, b[2], b[3]);
      if (kTwo) {
        plx_ldmatrix_x4(b, sb2 + plx_swz(brow, bchunk));
        plx_mma(y[2 * nb], a, b[0], b[1]);
        plx_mma(y[2 * nb + 1], a, b[2], b[3]);
      }
    }
  }
}

// ---- phase: accumulate  acc[band keys][this warp's columns] += X^T B, X from registers ------
// X is the transposed score tile (keys x queries, C-fragment layout), which is the A operand
// layout of the next product once packed to 16 bits; B [query rows][D] is read transposed.
__device__ __forceinline__ void band_accumulate(float (&acc)[kDw / 8][4], const float (&x)[kQN][4],
                                                const plx_e16* sb, int dsub) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int kb = 0; kb < kBlockM / 16; ++kb) {
    plx_u32 a[4];
    a[0] = plx_pack2(x[2 * kb][0], x[2 * kb][1]);
    a[1] = plx_pack2(x[2 * kb][2], x[2 * kb][3]);
    a[2] = plx_pack2(x[2 * kb + 1][0], x[2 * kb + 1][1]);
    a[3] = plx_pack2(x[2 * kb + 1][2], x[2 * kb + 1][3]);
#pragma unroll
    for (int dn = 0; dn < kDw / 16; ++dn) {
      plx_u32 b[4];
      plx_ldmatrix_x4_trans(b, sb + plx_swz(kb * 16 + (((lane >> 3) & 1) << 3) + (lane & 7),
                                            dsub * (kDw / 8) + 2 * dn + (lane >> 4)));
      plx_mma(acc[2 * dn], a, b[0], b[1]);
      plx_mma(acc[2 * dn + 1], a, b[2], b[3]);
    }
  }
}

// ---- phase: one step of a warp: scores, the elementwise backward, dV and dK, dS out -------
__device__ __forceinline__ void band_step(const PlxPrefillBwdParams& p, const BwdSequence& seq, const BwdSmem& sm,
                                          int n0, int m0, int band, int dsub, float (&dk)[kDw / 8][4],
                                          float (&dv)[kDw / 8][4]) {
  const int lane = threadIdx.x & 31;
  float s1[kQN][4], s2[kQN][4], g[kQN][4];
  band_scores<kLearned>(s1, s2, sm.k, sm.q, sm.r, band);
  band_scores<false>(g, g, sm.v, sm.dout, sm.dout, band);
  // w = exp2(s1 tau log2e - lse2); c, ds1, ds2 per docs/backward.md. s1 <- tau ds1,
  // s2 <- ds2, g <- c: the A operands of the products below.
#pragma unroll
  for (int n = 0; n < kQN; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int col = n * 8 + 2 * (lane & 3) + (e & 1);
      const int key = n0 + band * 16 + (lane >> 2) + 8 * (e >> 1);
      const float lse2 = sm.coef[col], tbar = sm.coef[kBlockM + col], u = sm.coef[2 * kBlockM + col];
      const float kappa = sm.coef[3 * kBlockM + col], dd = sm.coef[4 * kBlockM + col];
      const bool vis = bwd_visible(p, seq, m0 + col, key);
      const float w = vis ? plx_exp2(fmaf(s1[n][e], p.scale_log2, -lse2)) : 0.f;
      const float sp = kLearned ? s2[n][e] : 0.f;
      const float spread = 1.f - u * (sp - tbar);  // 1 - u (s2 - tbar)
      const float gv = g[n][e];
      const float ds1 = w * (fmaf(gv, spread, kappa * sp) - dd);
      s2[n][e] = w * (kappa - u * gv);
      s1[n][e] = p.scale * ds1;
      g[n][e] = w * spread;
    }
  band_accumulate(dv, g, sm.dout, dsub);
  band_accumulate(dk, s1, sm.q, dsub);
  if (kLearned) band_accumulate(dk, s2, sm.r, dsub);
  if (dsub == 0) {  // the band's dS for the dQ / dR products (the kDSplit warps hold the same)
#pragma unroll
    for (int n = 0; n < kQN; ++n)
#pragma unroll
      for (int hh = 0; hh < 2; ++hh) {
        const int off = (band * 16 + (lane >> 2) + 8 * hh) * kDsLd + n * 8 + 2 * (lane & 3);
        *reinterpret_cast<plx_u32*>(sm.ds1 + off) = plx_pack2(s1[n][2 * hh], s1[n][2 * hh + 1]);
        if (kLearned) *reinterpret_cast<plx_u32*>(sm.ds2 + off) = plx_pack2(s2[n][2 * hh], s2[n][2 * hh + 1]);
      }
  }
}

// ---- phase: dQ += (tau dS1) K, dR += dS2 K for the step's rows, out per dq_reduce.cuh ----
// Jobs of 16 query rows x 64 columns, spread over the warps. A = dS^T read transposed from
// the [key][query] tiles; B = K [key][D] read transposed.
__device__ __forceinline__ void dq_step(const PlxPrefillBwdParams& p, const BwdSequence& seq, const BwdSmem& sm,
                                        int h, int m0) {
  constexpr int kRowTiles = kBlockM / 16, kColChunks = kHeadDim / 64;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  for (int job = warp; job < kRowTiles * kColChunks; job += kWarps) {
    const int mt = job % kRowTiles, nc = job / kRowTiles;
    float aq[8][4], ar[8][4];
#pragma unroll
    for (int n = 0; n < 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) aq[n][e] = ar[n][e] = 0.f;
#pragma unroll
    for (int ks = 0; ks < kBlockN / 16; ++ks) {
      const int off = (ks * 16 + ((lane >> 4) << 3) + (lane & 7)) * kDsLd + mt * 16 + (((lane >> 3) & 1) << 3);
      plx_u32 a1[4], a2[4];
      plx_ldmatrix_x4_trans(a1, sm.ds1 + off);
      if (kLearned) plx_ldmatrix_x4_trans(a2, sm.ds2 + off);
#pragma unroll
      for (int dn = 0; dn < 4; ++dn) {
        plx_u32 b[4];
        plx_ldmatrix_x4_trans(b, sm.k + plx_swz(ks * 16 + (((lane >> 3) & 1) << 3) + (lane & 7),
                                                nc * 8 + 2 * dn + (lane >> 4)));
        plx_mma(aq[2 * dn], a1, b[0], b[1]);
        plx_mma(aq[2 * dn + 1], a1, b[2], b[3]);
        if (kLearned) {
          plx_mma(ar[2 * dn], a2, b[0], b[1]);
          plx_mma(ar[2 * dn + 1], a2, b[2], b[3]);
        }
      }
    }
    if (kDqBulk && !kDqDet) dq_job_wait_read();  // this job's tile has left for the previous step
#pragma unroll
    for (int hh = 0; hh < 2; ++hh) {
      const int row = mt * 16 + (lane >> 2) + 8 * hh, i = m0 + row;
      if (!kDqBulk && i >= seq.lq) continue;  // staged rows past the sequence are never sent
      const long long grow = ((seq.q0 + i) * kNumQHeads + h) * kHeadDim;
#pragma unroll
      for (int n = 0; n < 8; ++n) {
        const int col = nc * 64 + n * 8 + 2 * (lane & 3);
        dq_out_pair(sm.stage, p.dq_accum, row, col, grow, aq[n][2 * hh], aq[n][2 * hh + 1]);
        if (kLearned)
          dq_out_pair(sm.stage + kBlockM * kStageLd, p.dr_accum, row, col, grow, ar[n][2 * hh], ar[n][2 * hh + 1]);
      }
    }
    if (kDqBulk && !kDqDet) dq_job_send(p, seq, sm.stage, h, m0, mt, nc * 64);
  }
}

// ---- the backward kernel (mma.sync path) --------------------------------------------------
extern "C" __global__ void __launch_bounds__(kThreads) plx_bwd_main(const PlxPrefillBwdParams p) {
  extern __shared__ __align__(128) unsigned char smem[];
  const BwdSmem sm = bwd_smem(smem, 0);
  const int kvh = blockIdx.y, b = blockIdx.z;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int band = warp % kBands, dsub = warp / kBands;
  const BwdSequence seq = bwd_sequence(p, b);
  const int n0 = blockIdx.x * kBlockN;
  if (n0 >= seq.lk) return;
  const bool kpacked = p.cu_seqlens_k != nullptr;

  // phase: load this block's K and V (keys past the sequence zero-filled)
  KvSource src;
  src.k = static_cast<const plx_e16*>(p.k.data) + (kpacked ? seq.k0 * p.k.stride_l : b * p.k.stride_b) +
          kvh * p.k.stride_h;
  src.v = static_cast<const plx_e16*>(p.v.data) + (kpacked ? seq.k0 * p.v.stride_l : b * p.v.stride_b) +
          kvh * p.v.stride_h;
  src.k_tok = p.k.stride_l;
  src.v_tok = p.v.stride_l;
  KvSource::Pages pages;
  load_kv_tile(sm.k, sm.v, src, pages, n0, seq.lk);
  plx_cp_async_commit();

  // The query rows that see a key of [n0, n_last]: causal, i >= n0 - diag; window, i <
  // n_last - diag + W. Non-causal: diag = lk, so every row. Steps walk them kBlockM at a time
  // for each query head of the GQA group; step t is (head t / per_head, block t % per_head).
  const int n_last = min(n0 + kBlockN, seq.lk) - 1;
  // det aligns the steps to a grid of kBlockM rows shared by every key block (rows before
  // the first visible one see no key of this block and add zeros).
  const int m_first = max(0, n0 - seq.diag);
  const int m_lo = kDqDet ? m_first / kBlockM * kBlockM : m_first;
  const int m_hi = (kWindow && p.window > 0) ? min(seq.lq, n_last - seq.diag + p.window) : seq.lq;
  const int per_head = m_hi > m_lo ? (m_hi - m_lo + kBlockM - 1) / kBlockM : 0;
  const int steps = kGroup * per_head;
  auto load_step = [&](int t) {  // one cp.async group per step, into ring slot t % kStages
    const int h = kvh * kGroup + t / per_head, m0 = m_lo + (t % per_head) * kBlockM;
    load_query_block(p, seq, b, h, m0, bwd_smem(smem, t % kStages));
  };

  float dk[kDw / 8][4], dv[kDw / 8][4];
#pragma unroll
  for (int n = 0; n < kDw / 8; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) dk[n][e] = dv[n][e] = 0.f;

  // Ring of kStages steps: step t + kStages - 1 loads while step t computes. A slot is
  // refilled one step after its band_step read it, and the barrier before dq_step sits
  // between the two, so loads need no barrier of their own.
#pragma unroll 1
  for (int t = 0; t < kStages - 1 && t < steps; ++t) load_step(t);
#pragma unroll 1
  for (int t = 0; t < steps; ++t) {
    const int h = kvh * kGroup + t / per_head, m0 = m_lo + (t % per_head) * kBlockM;
    if (t + kStages - 1 < steps) load_step(t + kStages - 1);
    else plx_cp_async_commit();  // an empty group keeps the count of groups in flight fixed
    plx_cp_async_wait<kStages - 1>();
    __syncthreads();  // step t's rows are in; the previous dq_step's readers of dS are done
    band_step(p, seq, bwd_smem(smem, t % kStages), n0, m0, band, dsub, dk, dv);
    if (kDqBulk && kDqDet && warp == 0) plx_bulk_wait_read();  // the last step's rows have left the staging tile
    __syncthreads();
    if (kDqDet && !kDqBulk) dq_take_turn_all(p, seq, h, m0);
    dq_step(p, seq, sm, h, m0);
    if (kDqBulk && kDqDet) dq_flush_rows(p, seq, sm.stage, h, m0);
    else if (kDqDet) dq_pass_turn_all(p, seq, h, m0);
  }
  plx_cp_async_wait<0>();  // a block no query row sees still has its K/V copies in flight
  if (kDqBulk) plx_bulk_wait_done();  // the staging tile outlives its last copy (each sender's own)

  // phase: store dK, dV of this warp's keys and columns (zeros for keys no row sees)
  const long long dk_base = (kpacked ? seq.k0 * p.dk.stride_l : b * p.dk.stride_b) + kvh * p.dk.stride_h;
  const long long dv_base = (kpacked ? seq.k0 * p.dv.stride_l : b * p.dv.stride_b) + kvh * p.dv.stride_h;
#pragma unroll
  for (int hh = 0; hh < 2; ++hh) {
    const int j = n0 + band * 16 + (lane >> 2) + 8 * hh;
    if (j >= seq.lk) continue;
#pragma unroll
    for (int n = 0; n < kDw / 8; ++n) {
      const int col = dsub * kDw + n * 8 + 2 * (lane & 3);
      store_pair(p.dk.data, dk_base + (long long)j * p.dk.stride_l + col, dk[n][2 * hh], dk[n][2 * hh + 1]);
      store_pair(p.dv.data, dv_base + (long long)j * p.dv.stride_l + col, dv[n][2 * hh], dv[n][2 * hh + 1]);
    }
  }
}
