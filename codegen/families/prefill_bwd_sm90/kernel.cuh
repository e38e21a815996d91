// The phases of plx_bwd_main on Hopper (sm_90a) warpgroup MMA: the backward of
// prefill_bwd/kernel_mma.cuh with the same math, launch ABI and per-row kernels (rows.cuh).
// Two kernels run them: kernel_sync.cuh, where every thread loads with cp.async and a CTA
// barrier ring paces the steps (as the mma.sync kernel does), and kernel_ws.cuh, where a
// producer warpgroup loads and mbarriers pace the consumer warpgroups (kWarpSpecialized).
// CTA (key block of kBlockN = 64 kWgs / kDSplit keys, kv head, sequence); warpgroup wg owns
// keys [64 kg, 64 kg + 64), kg = wg % kKeyGroups -- the M = 64 of every wgmma, keys as MMA
// rows like the mma.sync kernel's transposed scores -- and holds their dK, dV in registers,
// columns [kDw dsub, kDw dsub + kDw), dsub = wg / kKeyGroups (head_dim 256: two warpgroups
// share 64 keys, both compute their scores, each keeps half of dK, dV). Per step
// of kBlockM query rows (per query head of the GQA group):
//   S1^T = K Q^T, S2^T = K R^T, G^T = V dO^T          SS wgmma, N = kBlockM
//   w, c, ds1, ds2 per docs/backward.md                 (registers)
//   dV += C^T dO, dK += (tau dS1)^T Q + dS2^T R         RS wgmma: the packed score
//                                                        accumulators are the A fragments
//   dQ^T = K^T (tau dS1)^T, dR^T = K^T dS2^T            SS wgmma, K^T read MN-major from the
//                                                        same K tile; one (64 columns of D,
//                                                        dQ or dR) job per warpgroup in turn
// dQ/dR partials leave as red.add (dq_reduce.cuh) or staged and sent per warpgroup in bulk.
// Every operand tile is a sequence of 64-column chunks [rows][64] in the 128-byte swizzle
// (1024-byte aligned) that the wgmma descriptors read (kernels/sm90/wgmma.cuh).
// Needs: sequence.cuh, rows.cuh (BwdCoef), dq_reduce.cuh (prefill_bwd), sm90/async.cuh,
// sm90/wgmma.cuh, the generated plx_bwd_wgmma_scores (N = kBlockM), plx_bwd_wgmma_acc
// (N = kDw, A in registers, B MN-major) and plx_bwd_wgmma_dq (N = kBlockM, A MN-major);
// kBlockM, kWgs (the warpgroups that compute), kWarpSpecialized, kDSplit, kDChunks, kDsSlots,
// kSmem* (generator).

constexpr int kKeysPerWg = 64;
constexpr int kKeyGroups = kWgs / kDSplit;         // 64-key groups of the block
constexpr int kDw = kHeadDim / kDSplit;            // dK, dV columns per warpgroup
constexpr int kQK = kBlockM / 16;                  // 16-query k-steps of the dK, dV products
constexpr int kDqJobs = kDChunks * (kLearned ? 2 : 1);
static_assert(kBlockN == kKeysPerWg * kKeyGroups && kWarps == 4 * (kWgs + (kWarpSpecialized ? 1 : 0)),
              "64 keys per kDSplit warpgroups (and a producer warpgroup when warp-specialized)");
static_assert(kDw % 64 == 0 && kDw <= 128, "N of the dK, dV wgmmas; at most 128 fp32 of dK, dV a thread");
static_assert(kBlockM == 32 || kBlockM == 64, "N of the score wgmmas");
static_assert(kHeadDim % 64 == 0, "whole 128-byte swizzle chunks along the head dim");
static_assert(!kDqDet, "the ordered dQ reduction stays on prefill_bwd");
// The shared tile parameters as this family fills them (source.cc Tiling): no K/V ring, the
// units are the step's query rows.
static_assert(kSmemRingOffset == 0 && kUnits == kBlockM, "the backward's tiling");

// ---- shared memory (offsets from the 1024-byte aligned base; source.cc GeometryOf) ------
// K, V [kDChunks][kBlockN][64]; kStages x (Q, (R), dO [kDChunks][kBlockM][64]); dS1, (dS2)
// [kBlockN / 64][kBlockM][64] (queries as rows: the K-major B of dQ^T), kDsSlots of them;
// kStages x 5 x kBlockM row coefficients; bulk: the staged fp32 dQ, (dR) rows; then the
// warp-specialized kernel's mbarriers (8 bytes each).
constexpr int kTileKv = kBlockN * kHeadDim;  // elements
constexpr int kTileQ = kBlockM * kHeadDim;
constexpr int kTileDs = kBlockM * kBlockN;
constexpr int kStepElems = (kLearned ? 3 : 2) * kTileQ;
constexpr int kDsElems = (kLearned ? 2 : 1) * kTileDs;  // one dS slot
constexpr int kBars = kWarpSpecialized ? 2 * kStages + 1 : 0;  // full, empty per slot; K/V
static_assert(kSmemRing == 2 * kTileKv * 2 && kSmemDs == kSmemRing + kStages * kStepElems * 2 &&
                  kSmemCoef == kSmemDs + kDsSlots * kDsElems * 2 &&
                  kSmemStage == kSmemCoef + kStages * 5 * kBlockM * 4 &&
                  kSmemBars == kSmemStage + (kDqStaged ? (kLearned ? 2 : 1) * kBlockM * kStageLd * 4 : 0) &&
                  kSmemBytes == 1024 + kSmemBars + 8 * kBars,
              "the generator's shared-memory layout (plus 1024 bytes to align the base)");

struct Sm90BwdSmem {
  plx_e16* k; plx_e16* v; plx_e16* q; plx_e16* r; plx_e16* dout; plx_e16* ds1; plx_e16* ds2;
  float* coef;   // [5][kBlockM]: lse2, tbar, u, kappa, Dd of the step's rows
  float* stage;  // bulk: [kBlockM][kStageLd] dQ rows, then as many dR rows
};
__device__ __forceinline__ Sm90BwdSmem sm90_bwd_smem(unsigned char* base, int slot) {
  plx_e16* e = reinterpret_cast<plx_e16*>(base);
  plx_e16* ring = reinterpret_cast<plx_e16*>(base + kSmemRing) + slot * kStepElems;
  plx_e16* ds = reinterpret_cast<plx_e16*>(base + kSmemDs);
  return Sm90BwdSmem{e, e + kTileKv, ring, ring + kTileQ, ring + (kLearned ? 2 : 1) * kTileQ, ds, ds + kTileDs,
                     reinterpret_cast<float*>(base + kSmemCoef) + slot * 5 * kBlockM,
                     reinterpret_cast<float*>(base + kSmemStage)};
}

// Element offset of (row, 16-byte chunk `c` along the row) in a chunked tile of kRows rows:
// chunk c / 8 of 64 columns, its 8 16-byte pieces XOR-swizzled by the row within 8.
template <int kRows>
__device__ __forceinline__ int sw128(int row, int c) {
  return (c / 8) * kRows * 64 + row * 64 + (((c % 8) ^ (row % 8)) * 8);
}
template <int kRows>
__device__ __forceinline__ int sw128_elem(int row, int col) {
  return sw128<kRows>(row, col / 8) + col % 8;
}

// kRows rows of D 16-bit elements from `g` (row i at g + i * stride) into a chunked tile;
// rows at or past `valid` are zero-filled (their address stays row 0's). Each thread copies
// one fixed 16-byte column, kRowsPerPass rows apart (the generator's copy split).
template <int kRows>
__device__ __forceinline__ void load_rows_sw128(plx_e16* tile, const plx_e16* g, long long stride, int valid) {
  constexpr int kPasses = (kRows + kRowsPerPass - 1) / kRowsPerPass;
  static_assert(kRows != kBlockN || kPasses == kRowsPerThread, "the K/V tile's copy split");
  const int c = threadIdx.x % kChunks, row0 = threadIdx.x / kChunks;
#pragma unroll
  for (int j = 0; j < kPasses; ++j) {
    const int row = row0 + j * kRowsPerPass;
    if (kPasses * kRowsPerPass > kRows && row >= kRows) break;
    const bool ok = row < valid;
    plx_cp_async16(tile + sw128<kRows>(row, c), g + (ok ? row * stride : 0) + c * 8, ok);
  }
}

// ---- phase: load the step's query rows: Q, (R), dO and their coefficients ----------------
__device__ __forceinline__ void sm90_load_query_block(const PlxPrefillBwdParams& p, const BwdSequence& seq, int b,
                                                      int h, int m0, const Sm90BwdSmem& sm) {
  const bool packed = p.cu_seqlens_q != nullptr;
  const int valid = max(0, min(kBlockM, seq.lq - m0));
  const int i0 = min(m0, max(seq.lq - 1, 0));  // a real row's address even for an empty block
  load_rows_sw128<kBlockM>(sm.q, static_cast<const plx_e16*>(p.q.data) + seq_row(p.q, packed, b, seq.q0, i0, h),
                           p.q.stride_l, valid);
  load_rows_sw128<kBlockM>(sm.dout,
                           static_cast<const plx_e16*>(p.dout.data) + seq_row(p.dout, packed, b, seq.q0, i0, h),
                           p.dout.stride_l, valid);
  if (kLearned)
    load_rows_sw128<kBlockM>(sm.r, static_cast<const plx_e16*>(p.r.data) + seq_row(p.r, packed, b, seq.q0, i0, h),
                             p.r.stride_l, valid);
  for (int row = threadIdx.x; row < kBlockM; row += kThreads) {
    const int i = m0 + row;
    const bool ok = i < seq.lq;
    const float* c = p.row_coef + ((seq.q0 + (ok ? i : 0)) * kNumQHeads + h) * kCoefCount;
    sm.coef[0 * kBlockM + row] = ok ? c[kCoefLse2] : PLX_INF;
    sm.coef[1 * kBlockM + row] = ok ? c[kCoefTbar] : 0.f;
    sm.coef[2 * kBlockM + row] = ok ? c[kCoefU] : 0.f;
    sm.coef[3 * kBlockM + row] = ok ? c[kCoefKappa] : 0.f;
    sm.coef[4 * kBlockM + row] = ok ? c[kCoefDd] : 0.f;
  }
  plx_cp_async_commit();
}

// Descriptor advance along K inside a chunked K-major tile: 16 elements are +32 bytes in the
// 128-byte row, a whole chunk (chunk_bytes) further past every 64.
__device__ __forceinline__ plx_u64 sm90_k_step(int kk, int chunk_bytes) {
  return plx_u64(((kk / 4) * chunk_bytes + (kk % 4) * 32) >> 4);
}
// ... and along K of an MN-major tile: 16 rows further is +2048 bytes.
__device__ __forceinline__ plx_u64 sm90_row_step(int kk) { return plx_u64((kk * 2048) >> 4); }

// The accumulator fragments as 16-bit A fragments of the next product, per 16-query k-step
// (the mma.sync A layout wgmma takes from registers: the accumulator->A identity).
typedef plx_u32 Sm90AFrag[kQK][4];
__device__ __forceinline__ void sm90_pack(const float (&x)[kBlockM / 2], Sm90AFrag& a) {
#pragma unroll
  for (int kb = 0; kb < kQK; ++kb)
#pragma unroll
    for (int r = 0; r < 4; ++r) a[kb][r] = plx_pack2(x[8 * kb + 2 * r], x[8 * kb + 2 * r + 1]);
}
template <int N>
__device__ __forceinline__ void sm90_fence_frag(plx_u32 (&a)[N][4]) {
  plx_fence_regs(*reinterpret_cast<plx_u32(*)[4 * N]>(&a[0][0]));
}

// ---- phase: transposed scores of this warpgroup's 64 keys (issued and waited) ------------
__device__ __forceinline__ void sm90_scores(float (&s1)[kBlockM / 2], float (&s2)[kBlockM / 2],
                                            float (&g)[kBlockM / 2], const Sm90BwdSmem& sm, int kg) {
  const plx_u64 dk = plx_wgmma_desc_sw128(sm.k + kg * kKeysPerWg * 64);
  const plx_u64 dv = plx_wgmma_desc_sw128(sm.v + kg * kKeysPerWg * 64);
  const plx_u64 dq = plx_wgmma_desc_sw128(sm.q), dr = plx_wgmma_desc_sw128(sm.r);
  const plx_u64 ddo = plx_wgmma_desc_sw128(sm.dout);
  plx_wgmma_fence();
#pragma unroll
  for (int kk = 0; kk < kHeadDim / 16; ++kk) {
    const plx_u64 ka = sm90_k_step(kk, kBlockN * 128), kb = sm90_k_step(kk, kBlockM * 128);
    plx_bwd_wgmma_scores(s1, dk + ka, dq + kb, kk > 0);
    if (kLearned) plx_bwd_wgmma_scores(s2, dk + ka, dr + kb, kk > 0);
    plx_bwd_wgmma_scores(g, dv + ka, ddo + kb, kk > 0);
  }
  plx_wgmma_commit();
  plx_wgmma_wait<0>();
  plx_fence_regs(s1);
  if (kLearned) plx_fence_regs(s2);
  plx_fence_regs(g);
}

// ---- phase: the elementwise backward on this thread's fragment (as band_step) ------------
// Fragment element 4 n + e: key row 16 warp + lane / 4 (+ 8 for e >= 2) of the warpgroup,
// query column 8 n + 2 (lane % 4) + (e & 1). s1 <- tau ds1, s2 <- ds2, g <- c.
__device__ __forceinline__ void sm90_elementwise(const PlxPrefillBwdParams& p, const BwdSequence& seq,
                                                 const Sm90BwdSmem& sm, int key0, int m0, float (&s1)[kBlockM / 2],
                                                 float (&s2)[kBlockM / 2], float (&g)[kBlockM / 2]) {
  const int lane = threadIdx.x & 31;
  // bwd_visible with this thread's row and column folded into four limits, so each element
  // compares compile-time offsets (dk = 8 (e >> 1) keys, dc = 8 n + (e & 1) queries) against
  // them instead of keeping per-element predicates live (they cost ptxas spills):
  // row exists, key exists, key <= diag + i, and (window) key > diag + i - W.
  const int lane_key = key0 + (lane >> 2), lane_col = 2 * (lane & 3);
  const int rows_left = seq.lq - m0 - lane_col, keys_left = seq.lk - lane_key;
  const int causal_lim = seq.diag + m0 + lane_col - lane_key;
  const bool windowed = kWindow && p.window > 0;
  const int window_lim = windowed ? causal_lim - p.window : -(1 << 30);
  // The step's row coefficients of this thread's two adjacent query columns, one 8-byte load each.
  auto coef2 = [&](int k, int n) { return *reinterpret_cast<const float2*>(sm.coef + k * kBlockM + lane_col + 8 * n); };
#pragma unroll
  for (int n = 0; n < kBlockM / 8; ++n) {
    // Probe none: tbar = 0 and u = 1 (rows.cuh), so spread = 1 and kappa drops out; only
    // lse2 and Dd are read.
    const float2 lse2v = coef2(0, n), ddv = coef2(4, n);
    const float2 tbarv = kLearned ? coef2(1, n) : make_float2(0.f, 0.f);
    const float2 uv = kLearned ? coef2(2, n) : make_float2(1.f, 1.f);
    const float2 kappav = kLearned ? coef2(3, n) : make_float2(0.f, 0.f);
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int i = 4 * n + e;
      const int dk = 8 * (e >> 1), dc = 8 * n + (e & 1);
      const bool odd = e & 1;
      const float lse2 = odd ? lse2v.y : lse2v.x, dd = odd ? ddv.y : ddv.x;
      const float tbar = odd ? tbarv.y : tbarv.x, u = odd ? uv.y : uv.x, kappa = odd ? kappav.y : kappav.x;
      const bool vis = dc < rows_left && dk < keys_left && dk - dc <= causal_lim && dk - dc > window_lim;
      const float w = vis ? plx_exp2(fmaf(s1[i], p.scale_log2, -lse2)) : 0.f;
      const float sp = kLearned ? s2[i] : 0.f;
      const float spread = 1.f - u * (sp - tbar);  // 1 - u (s2 - tbar)
      const float gv = g[i];
      const float ds1 = w * (fmaf(gv, spread, kappa * sp) - dd);
      s2[i] = w * (kappa - u * gv);
      s1[i] = p.scale * ds1;
      g[i] = w * spread;
    }
  }
}

// ---- phase: dS1, (dS2) of this warp's keys into the [query][key] tiles (16-bit) ----------
// Word r of k-step kb is an 8 x 8 block of the mma.sync layout: keys krow0 + 8 (r & 1) + lane / 4
// as rows, queries 16 kb + 8 (r >> 1) + 2 (lane % 4), + 1 as columns. stmatrix .trans writes
// each block transposed, so every query row gets its 8 keys as one 16-byte piece of the
// swizzled tile; lane l gives the address of row l % 8 of block l / 8. Four blocks a k-step:
// one instruction where per-element stores took 32.
__device__ __forceinline__ void sm90_stmatrix_x4_trans(plx_e16* row, const plx_u32 (&r)[4]) {
  asm volatile("stmatrix.sync.aligned.m8n8.x4.trans.shared.b16 [%0], {%1, %2, %3, %4};\n"
               :: "r"(plx_smem_addr(row)), "r"(r[0]), "r"(r[1]), "r"(r[2]), "r"(r[3]) : "memory");
}
__device__ __forceinline__ void sm90_store_ds(plx_e16* tile, const Sm90AFrag& a, int krow0) {
  const int lane = threadIdx.x & 31, blk = lane >> 3;
  const int key_chunk = (krow0 + 8 * (blk & 1)) / 8;  // the block's 8 keys: one 16-byte chunk
  const int query = 8 * (blk >> 1) + (lane & 7);
#pragma unroll
  for (int kb = 0; kb < kQK; ++kb) sm90_stmatrix_x4_trans(tile + sw128<kBlockM>(16 * kb + query, key_chunk), a[kb]);
}

// ---- phase: dV += C^T dO, dK += (tau dS1)^T Q + dS2^T R (issued; the caller waits) -------
// B = dO, Q, R [query][D] read MN-major from column kDw dsub (N = kDw across chunks kBlockM x
// 128 bytes apart).
__device__ __forceinline__ void sm90_issue_dkdv(float (&dk)[kDw / 2], float (&dv)[kDw / 2], const Sm90AFrag& a1,
                                                const Sm90AFrag& a2, const Sm90AFrag& ag, const Sm90BwdSmem& sm,
                                                int dsub) {
  const int col0 = dsub * (kDw / 64) * kBlockM * 64;  // element offset of the first chunk
  const plx_u64 bdo = plx_wgmma_desc_sw128_mn(sm.dout + col0, kBlockM * 128);
  const plx_u64 bq = plx_wgmma_desc_sw128_mn(sm.q + col0, kBlockM * 128);
  const plx_u64 br = plx_wgmma_desc_sw128_mn(sm.r + col0, kBlockM * 128);
  plx_fence_regs(dk);
  plx_fence_regs(dv);
  plx_wgmma_fence();
#pragma unroll
  for (int kb = 0; kb < kQK; ++kb) plx_bwd_wgmma_acc(dv, ag[kb], bdo + sm90_row_step(kb));
#pragma unroll
  for (int kb = 0; kb < kQK; ++kb) plx_bwd_wgmma_acc(dk, a1[kb], bq + sm90_row_step(kb));
  if (kLearned) {
#pragma unroll
    for (int kb = 0; kb < kQK; ++kb) plx_bwd_wgmma_acc(dk, a2[kb], br + sm90_row_step(kb));
  }
  plx_wgmma_commit();
}

// ---- bulk: a warpgroup's staged dQ/dR slabs to the copy engine ---------------------------
// The slab of job (c, which) is rows 0..kBlockM - 1, columns 64 c.. of the stage: once every
// thread of the warpgroup has written its part (named barrier 1 + wg), the warpgroup's first
// warp sends it as 256-byte row pieces (cp.reduce.async.bulk .add.f32), a row per lane. Jobs
// stay with their warpgroup, so the same lanes wait (plx_bulk_wait_read) before the next
// step rewrites the slab; no CTA barrier is needed.
__device__ __forceinline__ void sm90_bulk_reduce64(float* gdst, const float* ssrc) {
  asm volatile("cp.reduce.async.bulk.global.shared::cta.bulk_group.add.f32 [%0], [%1], 256;"
               :: "l"(gdst), "r"(plx_smem_addr(ssrc)) : "memory");
}
__device__ __forceinline__ void sm90_dq_send(const PlxPrefillBwdParams& p, const BwdSequence& seq, const float* stage,
                                             int wg, int h, int m0) {
  plx_fence_async_smem();
  plx_named_bar_sync(1 + wg, 128);
  if ((threadIdx.x & 127) >= 32) return;
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int jj = 0; jj < (kDqJobs + kWgs - 1) / kWgs; ++jj) {
    const int job = jj * kWgs + wg;
    if (job >= kDqJobs) break;
    const int c = job % kDChunks, which = job / kDChunks;
    float* accum = which ? p.dr_accum : p.dq_accum;
    for (int r = lane; r < kBlockM; r += 32) {
      if (m0 + r >= seq.lq) break;
      sm90_bulk_reduce64(accum + ((seq.q0 + m0 + r) * kNumQHeads + h) * kHeadDim + c * 64,
                         stage + (which * kBlockM + r) * kStageLd + c * 64);
    }
  }
  plx_bulk_commit();
}

// ---- phase: dQ^T, dR^T of the step's rows: red.add, or staged and sent in bulk ------------
// Job j: 64 columns (j % kDChunks) of D of dQ (j < kDChunks) or dR. A = K^T, the chunk of the
// K tile read MN-major (M = 64 columns of D, K = the block's keys); B = dS [query][key]
// K-major. Fragment element 4 n + e: column 64 c + 16 warp + lane / 4 (+ 8 for e >= 2), query
// row 8 n + 2 (lane % 4) + (e & 1).
__device__ __forceinline__ void sm90_dq(const PlxPrefillBwdParams& p, const BwdSequence& seq, const Sm90BwdSmem& sm,
                                        int wg, int h, int m0) {
  const int warp = (threadIdx.x >> 5) & 3, lane = threadIdx.x & 31;
#pragma unroll
  for (int jj = 0; jj < (kDqJobs + kWgs - 1) / kWgs; ++jj) {
    const int job = jj * kWgs + wg;
    if (job >= kDqJobs) break;
    const int c = job % kDChunks, which = job / kDChunks;
    const plx_u64 da = plx_wgmma_desc_sw128_mn(sm.k + c * kBlockN * 64, kBlockN * 128);
    const plx_u64 db = plx_wgmma_desc_sw128(which ? sm.ds2 : sm.ds1);
    float acc[kBlockM / 2];
    plx_wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < kBlockN / 16; ++kk)
      plx_bwd_wgmma_dq(acc, da + sm90_row_step(kk), db + sm90_k_step(kk, kBlockM * 128), kk > 0);
    plx_wgmma_commit();
    plx_wgmma_wait<0>();
    plx_fence_regs(acc);
    float* accum = which ? p.dr_accum : p.dq_accum;
#pragma unroll
    for (int n = 0; n < kBlockM / 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int d = c * 64 + warp * 16 + (lane >> 2) + 8 * (e >> 1);
        const int row = n * 8 + 2 * (lane & 3) + (e & 1);
        if (kDqBulk) {
          sm.stage[(which * kBlockM + row) * kStageLd + d] = acc[4 * n + e];
        } else if (m0 + row < seq.lq) {
          plx_red_add(accum + ((seq.q0 + m0 + row) * kNumQHeads + h) * kHeadDim + d, acc[4 * n + e]);
        }
      }
  }
  if (kDqBulk) sm90_dq_send(p, seq, sm.stage, wg, h, m0);
}

// ---- the steps of a CTA: the query rows that see a key of [n0, n_last] -------------------
// As kernel_mma.cuh: causal, i >= n0 - diag; window, i < n_last - diag + W. Step t is (head
// t / per_head, block t % per_head).
struct Sm90BwdSteps {
  int m_lo, per_head, steps;
  __device__ __forceinline__ int head(int kvh, int t) const { return kvh * kGroup + t / per_head; }
  __device__ __forceinline__ int row0(int t) const { return m_lo + (t % per_head) * kBlockM; }
};
__device__ __forceinline__ Sm90BwdSteps sm90_bwd_steps(const PlxPrefillBwdParams& p, const BwdSequence& seq, int n0) {
  const int n_last = min(n0 + kBlockN, seq.lk) - 1;
  const int m_lo = max(0, n0 - seq.diag);
  const int m_hi = (kWindow && p.window > 0) ? min(seq.lq, n_last - seq.diag + p.window) : seq.lq;
  const int per_head = m_hi > m_lo ? (m_hi - m_lo + kBlockM - 1) / kBlockM : 0;
  return Sm90BwdSteps{m_lo, per_head, kGroup * per_head};
}

// ---- phase: store dK, dV of this warp's 16 keys from key0 (zeros for keys no row sees) ---
__device__ __forceinline__ void sm90_store_dkdv(const PlxPrefillBwdParams& p, const BwdSequence& seq, int b, int kvh,
                                                int key0, int dsub, const float (&dk)[kDw / 2],
                                                const float (&dv)[kDw / 2]) {
  const int lane = threadIdx.x & 31;
  const bool kpacked = p.cu_seqlens_k != nullptr;
  const long long dk_base = (kpacked ? seq.k0 * p.dk.stride_l : b * p.dk.stride_b) + kvh * p.dk.stride_h;
  const long long dv_base = (kpacked ? seq.k0 * p.dv.stride_l : b * p.dv.stride_b) + kvh * p.dv.stride_h;
#pragma unroll
  for (int hh = 0; hh < 2; ++hh) {
    const int j = key0 + (lane >> 2) + 8 * hh;
    if (j >= seq.lk) continue;
#pragma unroll
    for (int n = 0; n < kDw / 8; ++n) {
      const int col = dsub * kDw + n * 8 + 2 * (lane & 3);
      store_pair(p.dk.data, dk_base + (long long)j * p.dk.stride_l + col, dk[4 * n + 2 * hh], dk[4 * n + 2 * hh + 1]);
      store_pair(p.dv.data, dv_base + (long long)j * p.dv.stride_l + col, dv[4 * n + 2 * hh], dv[4 * n + 2 * hh + 1]);
    }
  }
}
