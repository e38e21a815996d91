// plx_merge_states: the exact merge of two partial attentions of the same query rows over
// disjoint key sets (parallax.h, plx_merge_states; reference.h MergeStates has the same
// formulas in float64). A cascade uses it: a shared prefix attended non-causally, each
// sequence's own keys causally, merged row by row into attention over the whole sequence.
//
// Per row, parts A in {a, b} with lse_A (natural log), tbar_A, vbar_A (the softmax output)
// and out_A; l_A = exp(lse_A - lse), lse = ln(sum_A exp(lse_A)):
//   tbar = sum_A l_A tbar_A,  vbar = sum_A l_A vbar_A
//   softmax (probe none):  out = sum_A l_A out_A
//   plain:      out = sum_A l_A (out_A + (tbar - tbar_A) vbar_A)
//   amplified:  C_A = (vbar_A - out_A) g(1 - (tbar_A - r.q))   (out_A = vbar_A - C_A / g(...))
//               C = sum_A l_A (C_A + (tbar_A - tbar) vbar_A),  out = vbar - C / g(1 - (tbar - r.q))
// with g the eps guard of finalize.cuh (|x| < eps -> eps with x's sign, sign(0) = +1). A
// part with lse_A = -inf saw no key: it counts for nothing, whatever its other values; two
// such parts give out = vbar = 0, lse = -inf, tbar = 0.
//
// One warp per row; lane l owns elements [l * kPerLane, (l + 1) * kPerLane) of the head
// dim and reads and writes only those, with one 4-, 8- or 16-byte access per tensor. Every
// input is read before anything is written, and the row's statistics by every lane before
// lane 0 writes them, so an output may be the very tensor of an input (in place).
// Needs: kernel_abi.h (PlxMergeParams), prelude.cuh, element16.cuh; kHeadDim, kLearned,
// kAmplified, kMergeWarps (generator: GenerateMergeSource).

constexpr int kPerLane = kHeadDim / 32;  // 2, 4 or 8 elements
static_assert(kHeadDim % 64 == 0 && kPerLane <= 8, "head_dim 64, 128 or 256");

// kPerLane 16-bit elements as one aligned access.
struct __align__(kPerLane * 2) MergeChunk {
  plx_u32 w[kPerLane / 2];
};

__device__ __forceinline__ long long merge_offset(long long sb, long long sl, long long sh, long long b, int l,
                                                  int h) {
  return b * sb + l * sl + h * sh;
}
__device__ __forceinline__ MergeChunk* merge_chunk(const PlxMergeRows& t, long long b, int l, int h, int lane) {
  return reinterpret_cast<MergeChunk*>(static_cast<plx_e16*>(t.data) +
                                       merge_offset(t.stride_b, t.stride_l, t.stride_h, b, l, h)) +
         lane;
}
__device__ __forceinline__ void merge_load(const PlxMergeRows& t, long long b, int l, int h, int lane,
                                           float (&x)[kPerLane]) {
  const MergeChunk c = *merge_chunk(t, b, l, h, lane);
#pragma unroll
  for (int i = 0; i < kPerLane / 2; ++i) {
    x[2 * i] = plx_to_float(static_cast<plx_e16>(c.w[i] & 0xffffu));
    x[2 * i + 1] = plx_to_float(static_cast<plx_e16>(c.w[i] >> 16));
  }
}
__device__ __forceinline__ void merge_store(const PlxMergeRows& t, long long b, int l, int h, int lane,
                                            const float (&x)[kPerLane]) {
  MergeChunk c;
#pragma unroll
  for (int i = 0; i < kPerLane / 2; ++i) c.w[i] = plx_pack2(x[2 * i], x[2 * i + 1]);
  *merge_chunk(t, b, l, h, lane) = c;
}
__device__ __forceinline__ float* merge_stat(const PlxMergeStats& t, long long b, int l, int h) {
  return t.data + merge_offset(t.stride_b, t.stride_l, t.stride_h, b, l, h);
}
// The amplified guard (finalize.cuh's).
__device__ __forceinline__ float merge_guard(float delta, float eps) {
  return fabsf(delta) < eps ? (delta < 0.f ? -eps : eps) : delta;
}

extern "C" __global__ void __launch_bounds__(kMergeWarps * 32) plx_merge_states(const PlxMergeParams p) {
  const long long row = (long long)blockIdx.x * kMergeWarps + (threadIdx.x >> 5);
  if (row >= p.rows) return;
  const int lane = threadIdx.x & 31;
  const int h = static_cast<int>(row % p.heads);
  const long long bl = row / p.heads;
  const int l = static_cast<int>(bl % p.seqlen);
  const long long b = bl / p.seqlen;

  // phase: read every input (an output may be an input's tensor)
  const float lse_a = *merge_stat(p.lse_a, b, l, h), lse_b = *merge_stat(p.lse_b, b, l, h);
  float oa[kPerLane], ob[kPerLane], va[kPerLane], vb[kPerLane];
  merge_load(p.out_a, b, l, h, lane, oa);
  merge_load(p.out_b, b, l, h, lane, ob);
  float ta = 0.f, tb = 0.f, rq = 0.f;
  if (kLearned) {
    merge_load(p.vbar_a, b, l, h, lane, va);
    merge_load(p.vbar_b, b, l, h, lane, vb);
    ta = *merge_stat(p.tbar_a, b, l, h);
    tb = *merge_stat(p.tbar_b, b, l, h);
    if (kAmplified) {  // r.q: the lanes split the head dim
      float q[kPerLane], r[kPerLane], part = 0.f;
      merge_load(p.q, b, l, h, lane, q);
      merge_load(p.r, b, l, h, lane, r);
#pragma unroll
      for (int i = 0; i < kPerLane; ++i) part += q[i] * r[i];
      rq = plx_warp_sum(part);
    }
  }
  __syncwarp();  // every lane has read the row's statistics before lane 0 overwrites them

  // phase: the parts' weights; an absent part (lse -inf) gets 0 and is skipped below
  const float m = fmaxf(lse_a, lse_b);
  float la = 0.f, lb = 0.f, lse = -PLX_INF;
  if (m > -PLX_INF) {
    const float wa = lse_a > -PLX_INF ? expf(lse_a - m) : 0.f;
    const float wb = lse_b > -PLX_INF ? expf(lse_b - m) : 0.f;
    lse = m + logf(wa + wb);
    la = wa / (wa + wb);
    lb = wb / (wa + wb);
  }
  const bool has_a = la > 0.f, has_b = lb > 0.f;
  const float tbar = (has_a ? la * ta : 0.f) + (has_b ? lb * tb : 0.f);

  // phase: the merged output (and vbar)
  float out[kPerLane], vbar[kPerLane];
  const float g = kAmplified ? merge_guard(1.f - (tbar - rq), p.eps) : 1.f;
  const float ga = kAmplified ? merge_guard(1.f - (ta - rq), p.eps) : 1.f;
  const float gb = kAmplified ? merge_guard(1.f - (tb - rq), p.eps) : 1.f;
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) {
    if (!kLearned) {  // softmax: the output is its own vbar
      out[i] = (has_a ? la * oa[i] : 0.f) + (has_b ? lb * ob[i] : 0.f);
      vbar[i] = out[i];
      continue;
    }
    vbar[i] = (has_a ? la * va[i] : 0.f) + (has_b ? lb * vb[i] : 0.f);
    if (!kAmplified) {
      out[i] = (has_a ? la * (oa[i] + (tbar - ta) * va[i]) : 0.f) + (has_b ? lb * (ob[i] + (tbar - tb) * vb[i]) : 0.f);
    } else {
      const float c = (has_a ? la * ((va[i] - oa[i]) * ga + (ta - tbar) * va[i]) : 0.f) +
                      (has_b ? lb * ((vb[i] - ob[i]) * gb + (tb - tbar) * vb[i]) : 0.f);
      out[i] = vbar[i] - c / g;
    }
  }

  // phase: store
  merge_store(p.out, b, l, h, lane, out);
  if (p.vbar.data) merge_store(p.vbar, b, l, h, lane, vbar);
  if (lane == 0) {
    if (p.lse.data) *merge_stat(p.lse, b, l, h) = lse;
    if (p.tbar.data) *merge_stat(p.tbar, b, l, h) = tbar;
  }
}
