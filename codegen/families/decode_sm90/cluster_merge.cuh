// The split merge inside a thread-block cluster: the kClusterSplits CTAs of one head group
// (cluster rank = split) each own a share of the outputs. Every CTA sends each peer, by a
// bulk copy into the peer's shared memory, its partial statistics and its O1/O2 columns of
// that peer's share (its own share it reads from its outbox); the copies complete on the
// receiver's inbox mbarrier, so nobody waits at a cluster barrier after the loop and no
// fence covers global memory (the two cluster barriers of the first version were 40% of a
// one-tile CTA's time in ncu).
// Order: the inbox barrier is initialised and the cluster arrives (relaxed) before the key
// loop; the cluster wait, due before the first copy may target a peer's barrier, comes after
// it, when every peer has long arrived.
// Needs: async.cuh (sm90 mbarriers, cluster helpers), finalize.cuh, decode_common.cuh;
// kClusterSplits, kUnits, kHeadDim, kThreads, kWarps, kLearned, kMergeShare, kMsgFloats
// (generator).

static_assert(kMergeShare % 4 == 0 && kMsgFloats % 4 == 0, "messages are whole 16-byte pieces");
static_assert(kMergeShare * kClusterSplits >= kUnits * kHeadDim, "the shares cover every output");

// A message (one sender, one receiver): [kUnits][4] (m, d1, d2, c), then the receiver's
// share of O1, then of O2 (learned): element i = u * kHeadDim + d belongs to rank i / kMergeShare.
struct ClusterMerge {
  float* outbox;  // [kClusterSplits][kMsgFloats], message j for rank j
  float* inbox;   // [kClusterSplits][kMsgFloats], message s from rank s
  plx_u64* bar;   // the inbox: one arrival (this CTA's) plus every message's bytes
};

// One thread, with the ring's barriers: the inbox expects a message from every peer. A CTA's
// message to itself stays in its outbox (a bulk copy to shared::cluster must leave the CTA).
__device__ __forceinline__ void cluster_merge_init(const ClusterMerge& cm) {
  plx_mbar_init(cm.bar, 1);
  plx_mbar_init_fence();
  plx_mbar_arrive_expect_tx(cm.bar, (kClusterSplits - 1) * kMsgFloats * 4);
}

// ---- phase: this CTA's partial (its warps merged) into the outbox -------------------------
__device__ __forceinline__ void fill_outbox(const float* merge_o, const float* merge_st, float* outbox) {
  for (int i = threadIdx.x; i < kUnits * kHeadDim; i += kThreads) {
    const int u = i / kHeadDim, d = i % kHeadDim;
    const Merged r = merge_partials(kWarps, [&](int w) {
      const float* st = merge_st + (w * kUnits + u) * 4;
      const float* o = merge_o + (w * kUnits + u) * 2 * kHeadDim;
      return Partial{st[0], st[1], st[2], st[3], o[d], kLearned ? o[kHeadDim + d] : 0.f};
    });
    float* msg = outbox + (i / kMergeShare) * kMsgFloats + kUnits * 4;
    msg[i % kMergeShare] = r.o1;
    if (kLearned) msg[kMergeShare + i % kMergeShare] = r.o2;
    if (d == 0)
      for (int j = 0; j < kClusterSplits; ++j) {
        float* stats = outbox + j * kMsgFloats + u * 4;
        stats[0] = r.m;
        stats[1] = r.d1;
        stats[2] = r.d2;
        stats[3] = r.c;
      }
  }
  plx_fence_proxy_async();  // the bulk copies (async proxy) read what these stores wrote
}

// ---- phase: send every peer its message, take ours, finalize our share and store ---------
__device__ __forceinline__ void cluster_merge_and_store(const PlxDecodeParams& p, const ClusterMerge& cm, const float* rq,
                                                        int b, int h0) {
  __syncthreads();              // the outbox is complete
  plx_cluster_wait();           // every peer's inbox barrier is initialised (arrived before the loop)
  const plx_u32 rank = plx_cluster_rank();
  if (threadIdx.x == 0) {
    for (int j = 0; j < kClusterSplits; ++j)
      if (j != static_cast<int>(rank))
        plx_bulk_copy_to_cluster(plx_cluster_addr(cm.inbox + rank * kMsgFloats, j), cm.outbox + j * kMsgFloats,
                                 kMsgFloats * 4, plx_cluster_addr(cm.bar, j));
    asm volatile("cp.async.bulk.commit_group;" ::: "memory");
  }
  plx_mbar_wait(cm.bar, 0);  // every peer's message is here; ours is in the outbox
  const int first = rank * kMergeShare;
  for (int k = threadIdx.x; k < kMergeShare && first + k < kUnits * kHeadDim; k += kThreads) {
    const int u = (first + k) / kHeadDim, d = (first + k) % kHeadDim;
    const Merged r = merge_partials(kClusterSplits, [&](int s) {
      const float* msg = s == static_cast<int>(rank) ? cm.outbox + s * kMsgFloats : cm.inbox + s * kMsgFloats;
      const float* st = msg + u * 4;
      return Partial{st[0], st[1], st[2], st[3], msg[kUnits * 4 + k], kLearned ? msg[kUnits * 4 + kMergeShare + k] : 0.f};
    });
    out_row(p, b, unit_token(u), h0 + unit_head(u))[d] = plx_from_float(finalize(r.o1, r.o2, r.d1, r.d2, r.c, rq[u], p.eps));
  }
  if (threadIdx.x == 0)  // the outbox stays until the copies have read it
    asm volatile("cp.async.bulk.wait_group.read 0;" ::: "memory");
}
