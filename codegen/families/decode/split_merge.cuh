// plx_decode_merge: the second launch of a split decode, the same for both math paths.
// Needs: decode_common.cuh (kMaxSplits, plx_pdl_wait, out_row, partial_row), finalize.cuh; kMergeThreads,
// kNumQHeads, kTokens, kHeadDim, kLearned, kAmplified (generator).

// ---- split merge: combine num_splits partials of one (batch, token, head) ----------------
// Stage the per-split statistics once in shared memory (one weight and centre shift per
// split), then every thread sums its head-dim columns over the splits with independent loads.
extern "C" __global__ void __launch_bounds__(kMergeThreads) plx_decode_merge(const PlxDecodeParams p) {
  // x: token x head (kTokens x kNumQHeads), y: batch
  const int h = kTokens == 1 ? blockIdx.x : blockIdx.x % kNumQHeads, b = blockIdx.y;
  const int t = kTokens == 1 ? 0 : blockIdx.x / kNumQHeads;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  plx_pdl_wait();  // before any read of the partials plx_decode writes (no-op below sm_90)
  __shared__ float s_m[kMaxSplits], s_d1[kMaxSplits], s_d2[kMaxSplits], s_c[kMaxSplits];
  __shared__ float s_red[kMergeThreads / 32];
  __shared__ float s_tot[4];  // d1, d2, c, r.q
  const long long stride = partial_row(p, 1, 0, 0, 0);  // rows per split
  const long long row0 = partial_row(p, 0, b, t, h);
  const int n = min(p.num_splits, kMaxSplits);
  for (int s = threadIdx.x; s < n; s += kMergeThreads) {
    const float* st = p.part_stats + (row0 + s * stride) * 4;
    s_m[s] = st[0];
    s_d1[s] = st[1];
    s_d2[s] = st[2];
    s_c[s] = st[3];
  }
  float rq_part = 0.f;
  if (kLearned && kAmplified) {  // r.q, needed by the amplified affine form
    const plx_e16* q = static_cast<const plx_e16*>(p.q) + b * p.q_stride_b + t * p.q_stride_t + h * p.q_stride_h;
    const plx_e16* r = static_cast<const plx_e16*>(p.r) + b * p.r_stride_b + t * p.r_stride_t + h * p.r_stride_h;
    for (int d = threadIdx.x; d < kHeadDim; d += kMergeThreads)
      rq_part += plx_to_float(q[d]) * plx_to_float(r[d]);
    rq_part = plx_warp_sum(rq_part);
    if (lane == 0) s_red[warp] = rq_part;
  }
  __syncthreads();
  if (warp == 0) {  // weights: s_m becomes exp2(m_s - M); totals and the common centre
    float m = -PLX_INF;
    for (int s = lane; s < n; s += 32) m = fmaxf(m, s_m[s]);
    m = plx_warp_max(m);
    float d1 = 0.f, dc = 0.f;
    for (int s = lane; s < n; s += 32) {
      const float w = s_m[s] == -PLX_INF ? 0.f : plx_exp2(s_m[s] - m);
      s_m[s] = w;
      d1 += w * s_d1[s];
      dc += w * s_d1[s] * s_c[s];
    }
    d1 = plx_warp_sum(d1);
    dc = plx_warp_sum(dc);
    const float c = d1 > 0.f ? dc / d1 : 0.f;
    float d2 = 0.f;
    for (int s = lane; s < n; s += 32) d2 += s_m[s] * (s_d2[s] + (s_c[s] - c) * s_d1[s]);
    d2 = plx_warp_sum(d2);
    if (lane == 0) {
      float rq = 0.f;
      if (kLearned && kAmplified)
#pragma unroll
        for (int w = 0; w < kMergeThreads / 32; ++w) rq += s_red[w];
      s_tot[0] = d1;
      s_tot[1] = d2;
      s_tot[2] = c;
      s_tot[3] = rq;
    }
  }
  __syncthreads();
  const float c = s_tot[2];
  plx_e16* out = out_row(p, b, t, h);
  for (int d = threadIdx.x; d < kHeadDim; d += kMergeThreads) {
    float o1 = 0.f, o2 = 0.f;
#pragma unroll 4
    for (int s = 0; s < n; ++s) {
      const float w = s_m[s];
      const float* o = p.part_o + (row0 + s * stride) * 2 * kHeadDim;
      const float x1 = o[d];
      o1 += w * x1;
      if (kLearned) o2 += w * (o[kHeadDim + d] + (s_c[s] - c) * x1);
    }
    out[d] = plx_from_float(finalize(o1, o2, s_tot[0], s_tot[1], c, s_tot[3], p.eps));
  }
}
