// The per-row kernels of the backward, one warp per (query token, head): the preprocess
// (docs/backward.md, "What the forward saves, what a preprocess computes") and the
// postprocess that turns the fp32 dq/dr accumulators into the 16-bit gradients.
// Needs: sequence.cuh (token_row, token_stat, load_pair, store_pair), prelude.cuh
// (plx_warp_sum, PLX_INF); kHeadDim, kNumQHeads, kLearned, kAmplified, kRowWarps (generator).

// Row coefficients in PlxPrefillBwdParams::row_coef (8 floats per row).
enum BwdCoef { kCoefLse2 = 0, kCoefTbar, kCoefU, kCoefKappa, kCoefDd, kCoefRho, kCoefCount = 8 };

// ---- the preprocess: Dsum = dO.out, G = dO.vbar, then u, kappa, rho, Dd --------------------
// Plain: u = 1, kappa = G, rho = 0. Amplified (delta = 1 - (tbar - r.q)): outside the eps
// guard u = 1/delta, kappa = u Dsum, rho = u (G - Dsum); guarded, delta is the constant
// eps sign(delta): u = 1/(eps sign delta), kappa = u G, rho = 0. Dd = Dsum + kappa tbar.
// A row without a visible key (lse = -inf) gets lse2 = +inf, so every w_j is 0, and zeros.
// It also zeroes the row's dq/dr accumulators, so the main kernel needs no memset.
extern "C" __global__ void __launch_bounds__(kRowWarps * 32) plx_bwd_preprocess(const PlxPrefillBwdParams p) {
  const long long row = (long long)blockIdx.x * kRowWarps + (threadIdx.x >> 5);  // token * Hq + h
  if (row >= p.tokens_q * kNumQHeads) return;
  const int lane = threadIdx.x & 31;
  const int h = (int)(row % kNumQHeads);
  const long long tok = row / kNumQHeads;
  const long long o_off = token_row(p.out, p, tok, h), do_off = token_row(p.dout, p, tok, h);
  const long long vb_off = token_row(p.vbar, p, tok, h);
  float dsum = 0.f, g = 0.f, rq = 0.f;
  for (int d = 2 * lane; d < kHeadDim; d += 64) {
    float d0, d1, o0, o1, v0, v1;
    load_pair(p.dout.data, do_off + d, d0, d1);
    load_pair(p.out.data, o_off + d, o0, o1);
    load_pair(p.vbar.data, vb_off + d, v0, v1);
    dsum += d0 * o0 + d1 * o1;
    g += d0 * v0 + d1 * v1;
    if (kLearned && kAmplified) {
      float q0, q1, r0, r1;
      load_pair(p.q.data, token_row(p.q, p, tok, h) + d, q0, q1);
      load_pair(p.r.data, token_row(p.r, p, tok, h) + d, r0, r1);
      rq += q0 * r0 + q1 * r1;
    }
  }
  dsum = plx_warp_sum(dsum);
  g = plx_warp_sum(g);
  if (kLearned && kAmplified) rq = plx_warp_sum(rq);
  for (int d = lane; d < kHeadDim; d += 32) {
    p.dq_accum[row * kHeadDim + d] = 0.f;
    if (kLearned) p.dr_accum[row * kHeadDim + d] = 0.f;
  }
  if (lane == 0) {
    const long long si = token_stat(p, tok, h);
    const float lse = p.lse[si];
    const float tbar = kLearned ? p.tbar[si] : 0.f;
    float* c = p.row_coef + row * kCoefCount;
    float u = 1.f, kappa = g, rho = 0.f;
    if (kLearned && kAmplified) {
      const float delta = 1.f - (tbar - rq);
      if (fabsf(delta) < p.eps) {
        u = 1.f / (delta < 0.f ? -p.eps : p.eps);
        kappa = u * g;
      } else {
        u = 1.f / delta;
        kappa = u * dsum;
        rho = u * (g - dsum);
      }
    }
    const bool seen = lse > -PLX_INF;
    c[kCoefLse2] = seen ? lse * 1.44269504088896f : PLX_INF;
    c[kCoefTbar] = seen ? tbar : 0.f;
    c[kCoefU] = seen ? u : 0.f;
    c[kCoefKappa] = seen ? kappa : 0.f;
    c[kCoefDd] = seen ? dsum + kappa * tbar : 0.f;
    c[kCoefRho] = seen ? rho : 0.f;
    c[6] = c[7] = 0.f;
  }
}

// ---- the postprocess: dq = acc + rho r, dr = acc_r + rho q, in the 16-bit type --------------
extern "C" __global__ void __launch_bounds__(kRowWarps * 32) plx_bwd_postprocess(const PlxPrefillBwdParams p) {
  const long long row = (long long)blockIdx.x * kRowWarps + (threadIdx.x >> 5);
  if (row >= p.tokens_q * kNumQHeads) return;
  const int lane = threadIdx.x & 31;
  const int h = (int)(row % kNumQHeads);
  const long long tok = row / kNumQHeads;
  const float rho = (kLearned && kAmplified) ? p.row_coef[row * kCoefCount + kCoefRho] : 0.f;
  const float* aq = p.dq_accum + row * kHeadDim;
  const float* ar = p.dr_accum + row * kHeadDim;  // read for probe learned only
  const long long dq_off = token_row(p.dq, p, tok, h);
  const long long dr_off = kLearned ? token_row(p.dr, p, tok, h) : 0;
  // The amplified affine's r and q rows, addressed once: token_row's 64-bit division inside
  // the loop made ptxas spill (sm_90a cubins must not: kernel_check).
  const long long r_off = (kLearned && kAmplified) ? token_row(p.r, p, tok, h) : 0;
  const long long q_off = (kLearned && kAmplified) ? token_row(p.q, p, tok, h) : 0;
  for (int d = 2 * lane; d < kHeadDim; d += 64) {
    float x0 = aq[d], x1 = aq[d + 1];
    if (kLearned && kAmplified) {
      float r0, r1;
      load_pair(p.r.data, r_off + d, r0, r1);
      x0 += rho * r0;
      x1 += rho * r1;
    }
    store_pair(p.dq.data, dq_off + d, x0, x1);
    if (kLearned) {
      float y0 = ar[d], y1 = ar[d + 1];
      if (kAmplified) {
        float q0, q1;
        load_pair(p.q.data, q_off + d, q0, q1);
        y0 += rho * q0;
        y1 += rho * q1;
      }
      store_pair(p.dr.data, dr_off + d, y0, y1);
    }
  }
}
