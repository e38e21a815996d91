// The split merge inside a thread-block cluster: the kClusterSplits CTAs of one head group
// (cluster rank = split) each publish their partial state in their own shared memory; after
// a cluster barrier every CTA finalizes a share of the outputs, reading all splits' partials
// through distributed shared memory. One launch, and no partials in global memory.
// Needs: async.cuh (sm90 cluster helpers), finalize.cuh, decode_common.cuh; kClusterSplits,
// kUnits, kHeadDim, kThreads, kWarps, kLearned (generator).

// Published partial of one CTA: [kUnits][4] (m, d1, d2, c), then [kUnits][2][kHeadDim] (O1, O2).
constexpr int kPubFloats = kUnits * 4 + kUnits * 2 * kHeadDim;

// ---- phase: publish this CTA's partial (its warps merged) -------------------------------
__device__ __forceinline__ void publish_partial(const float* merge_o, const float* merge_st, float* pub) {
  for (int i = threadIdx.x; i < kUnits * kHeadDim; i += kThreads) {
    const int u = i / kHeadDim, d = i % kHeadDim;
    const Merged r = merge_partials(kWarps, [&](int w) {
      const float* st = merge_st + (w * kUnits + u) * 4;
      const float* o = merge_o + (w * kUnits + u) * 2 * kHeadDim;
      return Partial{st[0], st[1], st[2], st[3], o[d], kLearned ? o[kHeadDim + d] : 0.f};
    });
    float* o = pub + kUnits * 4 + u * 2 * kHeadDim;
    o[d] = r.o1;
    if (kLearned) o[kHeadDim + d] = r.o2;
    if (d == 0) {
      pub[u * 4 + 0] = r.m;
      pub[u * 4 + 1] = r.d1;
      pub[u * 4 + 2] = r.d2;
      pub[u * 4 + 3] = r.c;
    }
  }
}

// ---- phase: merge the cluster's splits and store -----------------------------------------
// Output element i = rank + kClusterSplits * j goes to thread j of CTA `rank`, so the ranks
// share the work. Each thread loads every split's statistics and columns first (independent
// distributed loads, in flight together), then combines them as plx_decode_merge does.
__device__ __forceinline__ void cluster_merge_and_store(const PlxDecodeParams& p, const float* rq, float* pub,
                                                        int b, int h0) {
  plx_cluster_sync();  // every split's partial is published
  const int rank = static_cast<int>(plx_cluster_rank());
  for (int i = rank + kClusterSplits * threadIdx.x; i < kUnits * kHeadDim; i += kClusterSplits * kThreads) {
    const int u = i / kHeadDim, d = i % kHeadDim;
    float m[kClusterSplits], d1[kClusterSplits], d2[kClusterSplits], c[kClusterSplits];
    float o1[kClusterSplits], o2[kClusterSplits];
#pragma unroll
    for (int s = 0; s < kClusterSplits; ++s) {
      const plx_u32 base = plx_cluster_addr(pub, s);
      const plx_u32 st = base + u * 4 * 4, o = base + (kUnits * 4 + u * 2 * kHeadDim + d) * 4;
      m[s] = plx_ld_cluster_f32(st);
      d1[s] = plx_ld_cluster_f32(st + 4);
      d2[s] = plx_ld_cluster_f32(st + 8);
      c[s] = plx_ld_cluster_f32(st + 12);
      o1[s] = plx_ld_cluster_f32(o);
      o2[s] = kLearned ? plx_ld_cluster_f32(o + kHeadDim * 4) : 0.f;
    }
    float mx = -PLX_INF;
#pragma unroll
    for (int s = 0; s < kClusterSplits; ++s) mx = fmaxf(mx, m[s]);
    float tot1 = 0.f, dc = 0.f;
#pragma unroll
    for (int s = 0; s < kClusterSplits; ++s) {
      m[s] = m[s] == -PLX_INF ? 0.f : plx_exp2(m[s] - mx);  // m becomes the split's weight
      tot1 += m[s] * d1[s];
      dc += m[s] * d1[s] * c[s];
    }
    const float cc = tot1 > 0.f ? dc / tot1 : 0.f;
    float tot2 = 0.f, acc1 = 0.f, acc2 = 0.f;
#pragma unroll
    for (int s = 0; s < kClusterSplits; ++s) {
      acc1 += m[s] * o1[s];
      if (kLearned) {
        tot2 += m[s] * (d2[s] + (c[s] - cc) * d1[s]);
        acc2 += m[s] * (o2[s] + (c[s] - cc) * o1[s]);
      }
    }
    plx_e16* out = static_cast<plx_e16*>(p.out) + b * p.o_stride_b + (h0 + u) * p.o_stride_h;
    out[d] = plx_from_float(finalize(acc1, acc2, tot1, tot2, cc, rq[u], p.eps));
  }
  plx_cluster_sync();  // no CTA leaves while a peer still reads its shared memory
}
