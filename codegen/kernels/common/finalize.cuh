// The Parallax epilogue: accumulators -> one output element, and the merge of partial
// online-softmax states (warps of a CTA, or splits of the key range).
// Needs: prelude.cuh; kLearned, kAmplified (generator).

// ---- phase: finalize (accumulators -> one output element) -------------------------------
// With weights p1 (d1 = sum p1) and a centre c, the accumulators are O1 = sum p1 v,
// O2 = sum p1 (s2 - c) v and d2 = sum p1 (s2 - c). Parallax is shift-invariant in c:
//   vbar = O1/d1, tbar = c + d2/d1, C = Cov_w(v, k) r = O2/d1 - (d2/d1) vbar
//   plain: out = vbar - C;  amplified: out = vbar - C/delta, delta = 1 - (tbar - r.q)
// Keeping c near tbar keeps O2 free of cancellation when the weights concentrate on few keys.
// No visible key (d1 == 0) gives 0.
__device__ __forceinline__ float finalize(float o1, float o2, float d1, float d2, float c, float rq,
                                          float eps) {
  if (d1 == 0.f) return 0.f;
  const float inv = 1.f / d1;
  const float vbar = o1 * inv;
  if (!kLearned) return vbar;
  const float cov = o2 * inv - d2 * inv * vbar;
  if (!kAmplified) return vbar - cov;
  float delta = 1.f - (c + d2 * inv - rq);
  if (fabsf(delta) < eps) delta = delta < 0.f ? -eps : eps;
  return vbar - cov / delta;
}

// Partial states (m, d1, d2, c, O1, O2) merged to one: rescale to the common max and move
// every O2/d2 to the weighted mean centre before summing.
struct Merged {
  float m, o1, o2, d1, d2, c;
};
template <typename Get>
__device__ __forceinline__ Merged merge_partials(int n, Get get) {
  float m = -PLX_INF;
  for (int i = 0; i < n; ++i) m = fmaxf(m, get(i).m);
  float d1 = 0.f, dc = 0.f;
  for (int i = 0; i < n; ++i) {
    const auto s = get(i);
    if (s.m == -PLX_INF) continue;
    const float w = plx_exp2(s.m - m) * s.d1;
    d1 += w;
    dc += w * s.c;
  }
  Merged r{m, 0.f, 0.f, d1, 0.f, d1 > 0.f ? dc / d1 : 0.f};
  for (int i = 0; i < n; ++i) {
    const auto s = get(i);
    if (s.m == -PLX_INF) continue;
    const float sc = plx_exp2(s.m - m);
    r.o1 += sc * s.o1;
    if (kLearned) {
      r.o2 += sc * (s.o2 + (s.c - r.c) * s.o1);
      r.d2 += sc * (s.d2 + (s.c - r.c) * s.d1);
    }
  }
  return r;
}
struct Partial {
  float m, d1, d2, c, o1, o2;
};
