/* Kernel launch ABI shared by the host runtime and every generated kernel.
 *
 * This header is plain C with no includes: the generator pastes it verbatim into each
 * generated source (NVRTC sees it without any include path) and the runtime includes it,
 * so both sides agree on the one by-value parameter struct each kernel takes.
 * Strides are in elements; the last (head_dim) dimension is contiguous.
 * Bump PLX_ABI_VERSION on any change. */
#ifndef PARALLAX_KERNEL_ABI_H_
#define PARALLAX_KERNEL_ABI_H_

#define PLX_ABI_VERSION 9

/* Decode: Tq new query tokens per sequence (the variant's kTokens; 1 but on decode_sm90).
 * q, r, out: [B, Tq, Hq, D] (the token stride unused when Tq = 1); k, v: contiguous
 * [B, Lmax, Hkv, D] or paged [pages, page_size, Hkv, D]. Token t of Tq sees keys
 * j <= seqlen - Tq + t (the cache holds the Tq new tokens).
 * Split-KV partials (when num_splits > 1) go to the caller-owned workspace:
 *   part_stats [num_splits, B, Tq, Hq, 4] floats (m in log2 units, d1, d2, unused)
 *   part_o     [num_splits, B, Tq, Hq, 2, D] floats (O1, O2)
 *   counters   [B, gridDim.y] ints (fused merge only; a runtime-owned buffer), zero before
 *              the first launch; the last CTA of each group resets its counter to zero. */
typedef struct PlxDecodeParams {
  const void* q;
  const void* r;
  const void* k;
  const void* v;
  void* out;
  float* part_stats;
  float* part_o;
  int* counters;
  const int* seqlens;      /* [B] keys visible per sequence; NULL: every sequence has seqlen */
  const int* block_table;  /* paged: [B, block_table_stride] page indices */
  long long q_stride_b, q_stride_h;
  long long r_stride_b, r_stride_h;
  long long o_stride_b, o_stride_h;
  long long k_stride_0, k_stride_1, k_stride_h; /* contiguous: batch, token; paged: page, slot */
  long long v_stride_0, v_stride_1, v_stride_h;
  int block_table_stride;
  int batch;
  int seqlen;          /* used when seqlens is NULL */
  int num_splits;      /* gridDim.x of the main kernel */
  int window;          /* > 0: keys older than window positions are invisible */
  float scale_log2;    /* qk_scale * log2(e) */
  float eps;           /* amplified-affine guard */
  int pad_;
  long long q_stride_t, r_stride_t, o_stride_t; /* Tq > 1: between query tokens */
} PlxDecodeParams;

/* Prefill / forward. causal = 1: the mask aligned to the end of the key sequence (query row i
 * of Lq sees keys j <= Lk - Lq + i); causal = 0: every query row sees all Lk keys of its
 * sequence (no window then), the form a shared prefix takes in a cascade (merge_states.cuh).
 * q, r, out: [B, Lq, Hq, D]; k, v: [B, Lk, Hkv, D]. With cu_seqlens_q/k (int32 [B+1])
 * sequences are packed along the token dimension and the batch strides are unused.
 * Optional per-row statistics (NULL = not written), float, row stride 1: padded, row i of
 * (b, h) at b * stats_stride_b + h * stats_stride_h + i; packed, at h * stats_stride_h +
 * cu_seqlens_q[b] + i (stats_stride_b unused). With tau = qk_scale, over the visible keys j:
 *   lse[row]  = ln(sum_j exp(tau q.k_j)) (natural log: FlashAttention's softmax_lse);
 *   tbar[row] = sum_j w_j (r.k_j), w_j = exp(tau q.k_j - lse): the softmax-weighted mean of
 *               the unscaled probe scores, 0 for probe none.
 * A row with no visible key has lse = -inf, tbar = 0. A backward pass recomputes w_j from
 * lse and the effective weights w_j (1 - (r.k_j - tbar)) (amplified: divide (r.k_j - tbar)
 * by delta = 1 - (tbar - r.q)). Softmax partials over disjoint key ranges merge through lse
 * as FlashAttention's do; Parallax partials also need each part's vbar (reference.h):
 *   vbar (optional, NULL = not written): the softmax output sum_j w_j v_j (O1/d1) per row, in
 *        out's dtype and layout ([B, Lq, Hq, D], packed rows at cu_seqlens_q[b] + i) with its
 *        own strides vbar_stride_b/_l/_h; a row with no visible key gets zeros. For probe none
 *        it equals out. */
typedef struct PlxPrefillParams {
  const void* q;
  const void* r;
  const void* k;
  const void* v;
  void* out;
  const int* cu_seqlens_q;
  const int* cu_seqlens_k;
  float* lse;
  float* tbar;
  void* vbar;
  /* Paged K/V (variants with kv_layout paged): k, v are [num_pages, page_size, Hkv, D] with
   * k_stride_b / v_stride_b the page stride and k_stride_l / v_stride_l the slot stride;
   * sequence b's key j lives in page block_table[b * block_table_stride + j / page_size];
   * seqused_k[b] keys are valid (cu_seqlens_k and seqlen_k are unused). */
  const int* block_table;
  const int* seqused_k;
  long long block_table_stride;
  long long q_stride_b, q_stride_l, q_stride_h;
  long long r_stride_b, r_stride_l, r_stride_h;
  long long k_stride_b, k_stride_l, k_stride_h;
  long long v_stride_b, v_stride_l, v_stride_h;
  long long o_stride_b, o_stride_l, o_stride_h;
  long long stats_stride_b, stats_stride_h;
  long long vbar_stride_b, vbar_stride_l, vbar_stride_h;
  int batch;
  int seqlen_q;        /* used when cu_seqlens_q is NULL */
  int seqlen_k;        /* used when cu_seqlens_k is NULL */
  int window;
  float scale_log2;
  float eps;
  int causal;          /* 1: causal, aligned to the end of the keys; 0: every key visible */
  int pad_;
} PlxPrefillParams;

/* The merge of two partial attentions of the same query rows over disjoint key sets
 * (plx_merge_states; kernels/common/merge_states.cuh): row (b, l, h), b < rows / (seqlen *
 * heads), l < seqlen, h < heads, starts at b * stride_b + l * stride_l + h * stride_h in
 * every tensor, each with its own strides (elements): D contiguous 16-bit elements in a
 * PlxMergeRows tensor, one float in a PlxMergeStats one. data NULL = absent (optional ones).
 * An output may be the very tensor of an input (in place): each element is read before it
 * is written, by the thread that writes it. */
typedef struct PlxMergeRows {
  void* data;
  long long stride_b, stride_l, stride_h;
} PlxMergeRows;
typedef struct PlxMergeStats {
  float* data;
  long long stride_b, stride_l, stride_h;
} PlxMergeStats;
typedef struct PlxMergeParams {
  PlxMergeRows out_a, vbar_a, out_b, vbar_b; /* the parts (vbar unread for probe none) */
  PlxMergeStats lse_a, tbar_a, lse_b, tbar_b; /* lse natural log; tbar unread for probe none */
  PlxMergeRows q, r;                         /* amplified only: r.q of each row */
  PlxMergeRows out, vbar;                    /* the merged output; its vbar (optional) */
  PlxMergeStats lse, tbar;                   /* the merged statistics (optional) */
  long long rows;                            /* batch x seqlen x heads */
  int seqlen, heads;
  float eps;                                 /* amplified-affine guard */
  int pad_;
} PlxMergeParams;

/* A CUtensorMap (cuTensorMapEncodeTiled on the host) passed by value, so the TMA unit reads
 * it from kernel parameter memory (the kernel takes the struct holding it __grid_constant__). */
typedef struct __attribute__((aligned(64))) PlxTensorMap {
  unsigned long long opaque[16];
} PlxTensorMap;

/* Prefill on sm_90a (the wgmma family): the prefill parameters plus TMA maps of q, r, k, v.
 * Each map is 4-D {D, heads, tokens, batch} over the tensor as p describes it (packed
 * sequences: tokens = the packed total, batch = 1), boxes 64 elements x 1 head x the
 * family's rows x 1 in the 128-byte swizzle; rows past the end read as zeros. r's map is
 * unused (zero) for probe none. */
typedef struct PlxPrefillTmaParams {
  PlxTensorMap tq, tr, tk, tv;
  PlxPrefillParams p;
  int* work_counters; /* persistent schedules: [2] ints (tile counter, retired CTAs), zero
                         before the first launch; the last CTA to retire zeroes them again,
                         so launches sharing a pair must not overlap (the runtime rotates) */
} PlxPrefillTmaParams;

/* Decode on sm_90a (the decode_sm90 family's plx_decode; its plx_decode_merge takes p alone):
 * the decode parameters plus TMA maps of k and v. Each map is 4-D {D, Hkv, tokens, B} over
 * the contiguous cache with tokens = p.seqlen, which must then bound every seqlens[b] and
 * stay within the cache's rows; boxes 64 elements x 1 head x the family's keys per tile x 1
 * in the 128-byte swizzle; rows at or past seqlen read as zeros. */
typedef struct PlxDecodeTmaParams {
  PlxTensorMap tk, tv;
  PlxDecodeParams p;
} PlxDecodeTmaParams;

/* The backward of a prefill (codegen/families/prefill_bwd; docs/backward.md): three kernels
 * take the same parameters. plx_bwd_preprocess, one warp per query row, forms the row's
 * coefficients into row_coef and zeroes its dq/dr accumulators; plx_bwd_main, CTA (key
 * block, kv head, sequence), accumulates dk, dv for its keys and adds its part of dq, dr into
 * the accumulators (fp32 atomics); plx_bwd_postprocess, one warp per query row, adds rho r /
 * rho q and writes dq, dr in the 16-bit type.
 * Tensors: a data pointer and element strides (batch, token, head); with cu_seqlens_q/k the
 * sequences are packed along the token dimension and stride_b is unused. q, r, out, dout,
 * vbar, dq, dr: [B, Lq, Hq, D]; k, v, dk, dv: [B, Lk, Hkv, D]. lse, tbar: the forward's
 * statistics in PlxPrefillParams's layout. r, dr are unused for probe none (vbar may be out
 * there: they are equal).
 * Workspace (float, caller-owned): a query token t (packed: its index; padded: b * seqlen_q
 * + i) and head h own row t * Hq + h of dq_accum and dr_accum (D floats each; dr_accum
 * unused for probe none) and of row_coef (8 floats: lse in log2 units (+inf: no visible
 * key), tbar, u, kappa, Dd, rho, unused x2). */
typedef struct PlxBwdRows {
  void* data;
  long long stride_b, stride_l, stride_h;
} PlxBwdRows;
typedef struct PlxPrefillBwdParams {
  PlxBwdRows q, r, k, v, out, dout, vbar;
  PlxBwdRows dq, dr, dk, dv;
  const float* lse;
  const float* tbar;
  long long stats_stride_b, stats_stride_h;
  const int* cu_seqlens_q;
  const int* cu_seqlens_k;
  float* dq_accum;
  float* dr_accum;
  float* row_coef;
  long long tokens_q;  /* query tokens: B * seqlen_q padded, the packed total with cu_seqlens */
  int batch;
  int seqlen_q;        /* padded: every sequence's; packed: the maximum (unused by the kernels) */
  int seqlen_k;        /* padded: every sequence's; packed: the maximum (the grid's key blocks) */
  int window;
  float scale;         /* qk_scale (tau) */
  float scale_log2;    /* qk_scale * log2(e) */
  float eps;           /* amplified-affine guard */
  int causal;
} PlxPrefillBwdParams;

#endif /* PARALLAX_KERNEL_ABI_H_ */
