// Warp-level attention on the tensor cores (mma.sync m16n8k16): per-warp state, scores,
// masking, online softmax with the moving Parallax centre, and P V accumulation.
// Needs: prelude.cuh, element16.cuh, mma_sync.cuh, tile_loader.cuh (plx_swz); kHeadDim,
// kMTiles, kLearned (generator).

// ---- warp state (mma path): fp32 accumulators in the m16n8 C-fragment layout ----------
// Lane l holds rows g = l/4 and g + 8 of each 16-row tile. Parallax stacks the q rows of 8
// query units over their r rows, so one lane holds s1 and s2 (and O1 and O2) of the same
// unit: p2 = p1 * s2 needs no data exchange. Softmax uses all 16 rows for 16 units.
struct WarpState {
  float o[kMTiles][kHeadDim / 8][4];
  float m[kMTiles][2];   // running max of s1 * scale * log2(e), rows g and g + 8
  float d1[kMTiles][2];  // lane-partial sums of p1 (reduced over the quad at the end)
  float c[kMTiles];      // Parallax: running weighted mean of s2 (the centre of O2)
};

__device__ __forceinline__ void state_init(WarpState& st) {
#pragma unroll
  for (int mt = 0; mt < kMTiles; ++mt) {
#pragma unroll
    for (int n = 0; n < kHeadDim / 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) st.o[mt][n][e] = 0.f;
    st.m[mt][0] = st.m[mt][1] = -PLX_INF;
    st.d1[mt][0] = st.d1[mt][1] = 0.f;
    st.c[mt] = 0.f;
  }
}

// ---- phase: scores  S = [q; r] K^T over KN keys (rows key0.. of the K tile) -------------
// kScale: s1 leaves in log2 units; without it the caller folds the scale into the exponent
// (softmax_update<.., kScaleInExp = true>).
template <int KN>
__device__ __forceinline__ void clear_scores(float (&s)[kMTiles][KN / 8][4]) {
#pragma unroll
  for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
    for (int n = 0; n < KN / 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) s[mt][n][e] = 0.f;
}
// s1 in log2 units (exp2 later); s2 (Parallax rows 8..15) stays unscaled.
template <int KN>
__device__ __forceinline__ void scale_scores(float (&s)[kMTiles][KN / 8][4], float scale_log2) {
#pragma unroll
  for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
    for (int n = 0; n < KN / 8; ++n)
#pragma unroll
      for (int e = 0; e < (kLearned ? 2 : 4); ++e) s[mt][n][e] *= scale_log2;
}
// c[mt][2 n] and c[mt][2 n + 1] += A[mt] times the two 8-wide n tiles of one ldmatrix.x4 B
// fragment, for every 16-row M tile: the inner step of both S = [q; r] K^T and O += P V.
template <int N>
__device__ __forceinline__ void mma_pair(float (&c)[kMTiles][N][4], const plx_u32 (&a)[kMTiles][4],
                                         const plx_u32 (&b)[4], int n) {
#pragma unroll
  for (int mt = 0; mt < kMTiles; ++mt) {
    plx_mma(c[mt][2 * n], a[mt], b[0], b[1]);
    plx_mma(c[mt][2 * n + 1], a[mt], b[2], b[3]);
  }
}
template <int KN, bool kScale = true>
__device__ __forceinline__ void scores(float (&s)[kMTiles][KN / 8][4], const plx_e16* sqr,
                                       const plx_e16* sk, int key0, float scale_log2) {
  const int lane = threadIdx.x & 31;
  clear_scores<KN>(s);
#pragma unroll
  for (int ks = 0; ks < kHeadDim / 16; ++ks) {
    plx_u32 a[kMTiles][4];
#pragma unroll
    for (int mt = 0; mt < kMTiles; ++mt)
      plx_ldmatrix_x4(a[mt], sqr + plx_swz(mt * 16 + (lane & 15), 2 * ks + (lane >> 4)));
#pragma unroll
    for (int nb = 0; nb < KN / 16; ++nb) {
      plx_u32 b[4];  // B fragments of two 8-key n-tiles: keys K rows, d along k
      plx_ldmatrix_x4(b, sk + plx_swz(key0 + nb * 16 + ((lane >> 4) << 3) + (lane & 7),
                                      2 * ks + ((lane >> 3) & 1)));
      mma_pair(s, a, b, nb);
    }
  }
  if constexpr (kScale) scale_scores<KN>(s, scale_log2);
}

// Hides keys a unit may not see: visible(unit, key) with key counted from the block start.
template <int KN, typename Visible>
__device__ __forceinline__ void mask_scores(float (&s)[kMTiles][KN / 8][4], Visible visible) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
    for (int n = 0; n < KN / 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        if (kLearned && e >= 2) continue;  // s2 rows: p2 = p1 * s2 is zero when p1 is
        const int unit = kLearned ? mt * 8 + (lane >> 2) : mt * 16 + (lane >> 2) + 8 * (e >> 1);
        const int key = n * 8 + 2 * (lane & 3) + (e & 1);
        if (!visible(unit, key)) s[mt][n][e] = -PLX_INF;
      }
}

// ---- phase: online softmax  p1 = exp2(s1 - m), p2 = p1 (s2 - c); rescale the running sums --
// Parallax moves the centre c to the running weighted mean of s2 before forming p2, so the
// 16-bit p2 operand carries only the spread of s2 (see finalize). Two steps, so a kernel
// whose P V runs asynchronously (sm_90 wgmma) can update the statistics while the previous
// tile's P V is still accumulating and rescale O once it has landed.
struct Rescale {
  float alpha[kMTiles][2];  // exp2(m_old - m_new), rows g and g + 8 (Parallax: one per unit)
  float shift[kMTiles];     // Parallax: c_old - c_new
};

// The row's largest score over this lane's columns, in kChains independent chains (short
// dependency chains for a warp that has the SM sub-partition to itself).
template <int KN, int kChains>
__device__ __forceinline__ float row_max(const float (&s)[KN / 8][4], int h) {
  float mx[kChains];
#pragma unroll
  for (int c = 0; c < kChains; ++c) mx[c] = -PLX_INF;
#pragma unroll
  for (int n = 0; n < KN / 8; ++n) mx[n % kChains] = fmaxf(mx[n % kChains], fmaxf(s[n][2 * h], s[n][2 * h + 1]));
#pragma unroll
  for (int c = 1; c < kChains; ++c) mx[0] = fmaxf(mx[0], mx[c]);
  return mx[0];
}
template <int kChains>
__device__ __forceinline__ float chain_sum(float (&x)[kChains]) {
#pragma unroll
  for (int c = 1; c < kChains; ++c) x[0] += x[c];
  return x[0];
}

// kScaleInExp: the scores are not yet in log2 units; scale (> 0) is folded into the
// exponent's FFMA (and the max). kChains: independent partial max/sum chains.
// kLagCentre (Parallax, asynchronous P V): p2 uses the centre of the previous tiles, so it
// does not wait for this tile's sums to cross the quad; the centre still moves to the exact
// running mean and O2 follows it one tile late (rescale_o<true>, settle_centre).
template <int KN, int kChains = 1, bool kLagCentre = false, bool kScaleInExp = false>
__device__ __forceinline__ void softmax_update(float (&s)[kMTiles][KN / 8][4], WarpState& st, Rescale& r,
                                               float scale = 1.f) {
  static_assert((KN / 8) % kChains == 0, "chains must divide the 8-key column blocks");
#pragma unroll
  for (int mt = 0; mt < kMTiles; ++mt) {
#pragma unroll
    for (int h = 0; h < (kLearned ? 1 : 2); ++h) {
      const float mx = plx_quad_max(row_max<KN, kChains>(s[mt], h));
      const float m_new = fmaxf(st.m[mt][h], kScaleInExp ? mx * scale : mx);
      const float m_use = m_new == -PLX_INF ? 0.f : m_new;  // all hidden so far: avoid inf - inf
      const float alpha = plx_exp2(st.m[mt][h] - m_use);
      st.m[mt][h] = m_new;
      r.alpha[mt][h] = alpha;
      float sum1[kChains], sum_s2[kChains];
#pragma unroll
      for (int c = 0; c < kChains; ++c) sum1[c] = sum_s2[c] = 0.f;
#pragma unroll
      for (int n = 0; n < KN / 8; ++n) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const float x = s[mt][n][2 * h + e];
          const float p1 = plx_exp2(kScaleInExp ? fmaf(x, scale, -m_use) : x - m_use);
          s[mt][n][2 * h + e] = p1;
          sum1[n % kChains] += p1;
          if (kLearned && kLagCentre) {  // p2 in the previous centre; its sum moves the centre
            s[mt][n][2 + e] = p1 * (s[mt][n][2 + e] - st.c[mt]);
            sum_s2[n % kChains] += s[mt][n][2 + e];
          } else if (kLearned) {
            sum_s2[n % kChains] += p1 * s[mt][n][2 + e];
          }
        }
      }
      if (kLearned) {  // d1 is kept quad-uniform here: the centre needs the row's full sums
        const float t1 = plx_quad_sum(chain_sum<kChains>(sum1)), t2 = plx_quad_sum(chain_sum<kChains>(sum_s2));
        const float d1_old = st.d1[mt][0] * alpha;
        const float d1_new = d1_old + t1;
        const float c_old = st.c[mt];
        const float c_new = d1_new > 0.f ? (kLagCentre ? c_old + t2 / d1_new  // t2 = sum p1 (s2 - c_old)
                                                       : (d1_old * c_old + t2) / d1_new)
                                         : c_old;
        r.shift[mt] = c_old - c_new;
        st.d1[mt][0] = d1_new;
        st.c[mt] = c_new;
        if (!kLagCentre) {
#pragma unroll
          for (int n = 0; n < KN / 8; ++n)
#pragma unroll
            for (int e = 0; e < 2; ++e) s[mt][n][2 + e] = s[mt][n][e] * (s[mt][n][2 + e] - c_new);
        }
      } else {
        st.d1[mt][h] = st.d1[mt][h] * alpha + chain_sum<kChains>(sum1);
      }
    }
  }
}

// O1 and O2 into the new frame: O2 moves with the centre (O2 + shift O1), both scale by alpha.
// kSkipIdle: a warp whose rows all kept their max skips the scaling (after the first tiles
// the max rarely moves); Parallax still moves O2 with the centre.
template <bool kSkipIdle = false>
__device__ __forceinline__ void rescale_o(WarpState& st, const Rescale& r, const float (&shifts)[kMTiles]) {
#pragma unroll
  for (int mt = 0; mt < kMTiles; ++mt) {
    if (kLearned) {
      const float alpha = r.alpha[mt][0], shift = shifts[mt];
      if (kSkipIdle && __all_sync(0xffffffffu, alpha == 1.f)) {  // the centre moves; no row's max did
#pragma unroll
        for (int n = 0; n < kHeadDim / 8; ++n) {
          st.o[mt][n][2] = fmaf(shift, st.o[mt][n][0], st.o[mt][n][2]);
          st.o[mt][n][3] = fmaf(shift, st.o[mt][n][1], st.o[mt][n][3]);
        }
        continue;
      }
#pragma unroll
      for (int n = 0; n < kHeadDim / 8; ++n) {
        st.o[mt][n][2] = alpha * fmaf(shift, st.o[mt][n][0], st.o[mt][n][2]);
        st.o[mt][n][3] = alpha * fmaf(shift, st.o[mt][n][1], st.o[mt][n][3]);
        st.o[mt][n][0] *= alpha;
        st.o[mt][n][1] *= alpha;
      }
    } else {
      if (kSkipIdle && __all_sync(0xffffffffu, r.alpha[mt][0] == 1.f && r.alpha[mt][1] == 1.f)) continue;
#pragma unroll
      for (int h = 0; h < 2; ++h)
#pragma unroll
        for (int n = 0; n < kHeadDim / 8; ++n) {
          st.o[mt][n][2 * h] *= r.alpha[mt][h];
          st.o[mt][n][2 * h + 1] *= r.alpha[mt][h];
        }
    }
  }
}
__device__ __forceinline__ void rescale_o(WarpState& st, const Rescale& r) { rescale_o(st, r, r.shift); }

// The lagged centre (softmax_update<.., true>): O2 holds the tiles so far in the centre before
// the last update's, so a rescale takes the shift the previous update recorded (lag) and
// keeps this one's; after the last P V, settle_centre moves O2 to st.c.
struct CentreLag {
  float shift[kMTiles];
};
template <bool kSkipIdle = false>
__device__ __forceinline__ void rescale_o_lagged(WarpState& st, const Rescale& r, CentreLag& lag) {
  rescale_o<kSkipIdle>(st, r, lag.shift);
#pragma unroll
  for (int mt = 0; mt < kMTiles; ++mt) lag.shift[mt] = r.shift[mt];
}
__device__ __forceinline__ void settle_centre(WarpState& st, CentreLag& lag) {
#pragma unroll
  for (int mt = 0; mt < kMTiles; ++mt) {
    if (kLearned) {
#pragma unroll
      for (int n = 0; n < kHeadDim / 8; ++n) {
        st.o[mt][n][2] = fmaf(lag.shift[mt], st.o[mt][n][0], st.o[mt][n][2]);
        st.o[mt][n][3] = fmaf(lag.shift[mt], st.o[mt][n][1], st.o[mt][n][3]);
      }
    }
    lag.shift[mt] = 0.f;
  }
}

template <int KN>
__device__ __forceinline__ void online_softmax(float (&s)[kMTiles][KN / 8][4], WarpState& st) {
  Rescale r;
  softmax_update<KN>(s, st, r);
  rescale_o(st, r);
}

// ---- phase: accumulate  [O1; O2] += [P1; P2] V (P fragments reused as the A operand) ----
// The A operand of keys 16 kb .. 16 kb + 15: the probability fragments packed to 16 bits
// (the C layout of S is the A layout of P V).
template <int KN>
__device__ __forceinline__ void p_operand(plx_u32 (&a)[kMTiles][4], const float (&s)[kMTiles][KN / 8][4], int kb) {
#pragma unroll
  for (int mt = 0; mt < kMTiles; ++mt) {
    a[mt][0] = plx_pack2(s[mt][2 * kb][0], s[mt][2 * kb][1]);
    a[mt][1] = plx_pack2(s[mt][2 * kb][2], s[mt][2 * kb][3]);
    a[mt][2] = plx_pack2(s[mt][2 * kb + 1][0], s[mt][2 * kb + 1][1]);
    a[mt][3] = plx_pack2(s[mt][2 * kb + 1][2], s[mt][2 * kb + 1][3]);
  }
}
// The P V loop over a warp's KN keys; load_v(b, kb, dn) brings the V^T fragments of keys
// 16 kb .. 16 kb + 15 and d tiles 2 dn, 2 dn + 1 from wherever the family's tile lives.
template <int KN, typename LoadV>
__device__ __forceinline__ void accumulate_pv(const float (&s)[kMTiles][KN / 8][4], WarpState& st, LoadV load_v) {
#pragma unroll
  for (int kb = 0; kb < KN / 16; ++kb) {
    plx_u32 a[kMTiles][4];
    p_operand<KN>(a, s, kb);
#pragma unroll
    for (int dn = 0; dn < kHeadDim / 16; ++dn) {
      plx_u32 b[4];  // V^T fragments of two 8-wide d tiles
      load_v(b, kb, dn);
      mma_pair(st.o, a, b, dn);
    }
  }
}
template <int KN>
__device__ __forceinline__ void accumulate(const float (&s)[kMTiles][KN / 8][4], WarpState& st,
                                           const plx_e16* sv, int key0) {
  const int lane = threadIdx.x & 31;
  accumulate_pv<KN>(s, st, [&](plx_u32 (&b)[4], int kb, int dn) {
    plx_ldmatrix_x4_trans(b, sv + plx_swz(key0 + kb * 16 + (((lane >> 3) & 1) << 3) + (lane & 7),
                                          2 * dn + (lane >> 4)));
  });
}
