// Prefill's view of one (sequence, head): packed (cu_seqlens) or padded batches, the causal
// mask aligned to the end of the keys (or none: p.causal == 0, every row sees every key of
// its sequence), and the rows and keys one CTA covers.
// Needs: kernel_abi (PlxPrefillParams), prelude.cuh (PLX_INF), the family's kv_contiguous.cuh
// or kv_paged.cuh (KvSource, sequence_kv); kGroup, kBlockM, kBlockN, kWindow (generator).

// One sequence of the batch: its lengths and base pointers (packed when cu_seqlens given).
struct Sequence {
  int lq, lk;
  int diag;  // causal: lk - lq, the last key query row 0 sees; non-causal: lk (past every key)
  const plx_e16* q;
  const plx_e16* r;
  plx_e16* out;
  long long stats;  // stats_row0 (sm_90a: its consumers cannot recompute it at the store)
  KvSource kv;
};
// The element of (b, h)'s query row 0 in lse / tbar (kernel_abi.h). An offset, not two
// pointers, and the portable kernels recompute it at their store: anything kept live across
// the K/V loop costs registers where the kernels are tightest.
__device__ __forceinline__ long long stats_row0(const PlxPrefillParams& p, int b, int h) {
  return h * p.stats_stride_h + (p.cu_seqlens_q ? p.cu_seqlens_q[b] : b * p.stats_stride_b);
}
__device__ __forceinline__ Sequence make_sequence(const PlxPrefillParams& p, int b, int h) {
  long long qoff, ooff;
  Sequence s;
  if (p.cu_seqlens_q) {
    const int q0 = p.cu_seqlens_q[b];
    s.lq = p.cu_seqlens_q[b + 1] - q0;
    qoff = (long long)q0 * p.q_stride_l;
    ooff = (long long)q0 * p.o_stride_l;
    s.r = static_cast<const plx_e16*>(p.r) + (long long)q0 * p.r_stride_l + h * p.r_stride_h;
  } else {
    s.lq = p.seqlen_q;
    qoff = b * p.q_stride_b;
    ooff = b * p.o_stride_b;
    s.r = static_cast<const plx_e16*>(p.r) + b * p.r_stride_b + h * p.r_stride_h;
  }
  const SequenceKv kv = sequence_kv(p, b, h / kGroup);
  s.kv = kv.kv;
  s.lk = kv.lk;
  s.diag = p.causal ? s.lk - s.lq : s.lk;
  s.q = static_cast<const plx_e16*>(p.q) + qoff + h * p.q_stride_h;
  s.out = static_cast<plx_e16*>(p.out) + ooff + h * p.o_stride_h;
  s.stats = stats_row0(p, b, h);
  return s;
}

// A query row's statistics at element `row` of lse / tbar, from the online softmax's: m the
// running max of s1 in log2 units, d1 = sum exp2(s1 - m) (0: no key was visible), tbar the
// weighted mean of s2. One lane per row calls it.
__device__ __forceinline__ void store_row_stats(const PlxPrefillParams& p, long long row, float m, float d1,
                                                float tbar) {
  if (p.lse) p.lse[row] = d1 > 0.f ? (m + log2f(d1)) * 0.69314718f : -PLX_INF;
  if (p.tbar) p.tbar[row] = d1 > 0.f ? tbar : 0.f;
}

// x, as a value the compiler cannot compute ahead of this point: an address built from it is
// not hoisted above the K/V loop and kept live through it (the fma kernel's vbar store).
__device__ __forceinline__ int plx_opaque(int x) {
  asm volatile("mov.b32 %0, %0;" : "+r"(x));
  return x;
}

// Row i of the vbar output (kernel_abi.h: out's layout, its own strides). Recomputed at the
// store, like stats_row0, so nothing of it is live through the K/V loop.
__device__ __forceinline__ plx_e16* vbar_row(const PlxPrefillParams& p, int b, int h, int i) {
  const long long row = p.cu_seqlens_q ? (long long)(p.cu_seqlens_q[b] + i) * p.vbar_stride_l
                                       : b * p.vbar_stride_b + (long long)i * p.vbar_stride_l;
  return static_cast<plx_e16*>(p.vbar) + row + h * p.vbar_stride_h;
}

// Causal: key j is visible to query row i iff j < Lk, j <= Lk - Lq + i and (window)
// j > Lk - Lq + i - W. Non-causal (p.causal == 0, never with a window): iff j < Lk, as
// s.diag + i >= Lk. (s.diag rather than a select on p.causal here: the select in the
// masked tiles' inner loop cost the fma kernel spills.)
__device__ __forceinline__ bool visible_key(const PlxPrefillParams& p, const Sequence& s, int i, int j) {
  const int last = s.diag + i;
  return j < s.lk && j <= last && (!kWindow || p.window <= 0 || j > last - p.window);
}

// The query rows of this CTA (query tiles are issued last-first: the longest causal rows start
// earliest) and the key range [lo, hi) they see.
struct QueryTile {
  int row0, row_last;  // first and last query row
  int off;             // seq.diag: key index of query row 0's diagonal, lk - lq (non-causal:
                       // lk, so no row's diagonal cuts into the keys: every row sees [0, lk))
  int lo, hi;
  int num_tiles;       // kBlockN tiles of [lo, hi)
};
__device__ __forceinline__ int query_tile_row0() { return (gridDim.x - 1 - blockIdx.x) * kBlockM; }
__device__ __forceinline__ QueryTile query_tile(const PlxPrefillParams& p, const Sequence& seq, int row0) {
  QueryTile q;
  q.row0 = row0;
  q.row_last = min(seq.lq, row0 + kBlockM) - 1;
  q.off = seq.diag;
  q.hi = min(seq.lk, q.off + q.row_last + 1);
  q.lo = (kWindow && p.window > 0) ? max(0, q.off + row0 - p.window + 1) : 0;
  q.num_tiles = q.hi > q.lo ? (q.hi - q.lo + kBlockN - 1) / kBlockN : 0;
  return q;
}
// Only tiles on the causal diagonal, the window edge or the sequence end need a mask
// (non-causal: the sequence end only, as q.off + q.row0 + 1 > lk).
__device__ __forceinline__ bool edge_tile(const PlxPrefillParams& p, const Sequence& seq, const QueryTile& q,
                                          int t0) {
  return t0 + kBlockN > min(seq.lk, q.off + q.row0 + 1) ||
         (kWindow && p.window > 0 && t0 <= q.off + q.row_last - p.window);
}
