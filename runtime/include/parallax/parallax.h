/* Parallax: JIT-compiled Parallax / softmax attention kernels behind a plain C API.
 *
 * Conventions
 *   - Every function that can fail returns a plx_status; PLX_OK is 0. On failure,
 *     plx_last_error() returns a message naming the offending argument (thread-local; a
 *     successful call does not clear it).
 *   - Handles are opaque; names are plx_<object>_<verb>.
 *   - Tensors are described by plx_tensor (device pointer, dtype, shape, strides in elements).
 *     The last dimension must be contiguous (stride 1); other strides are free within two
 *     bounds, so permuted views such as a [B, Hkv, Lmax, D] cache passed as shape
 *     [B, Lmax, Hkv, D] with the matching strides work: the largest element offset (sum over
 *     dimensions of (shape-1) * stride) must stay at or below 2^48, and out may not alias
 *     (no zero stride on a dimension of size > 1, no stride inside another dimension's span).
 *     All strides zero means "contiguous row-major" (so a tensor broadcast along every
 *     dimension cannot be described; none is meaningful here).
 *   - Every tensor given must have a non-NULL data pointer, empty ones included; a launch
 *     with B == 0 does nothing.
 *   - Kernels read with 16-byte vector loads: the data pointers of q, r, k, v and out must be
 *     16-byte aligned and their non-last strides multiples of 8 elements. Index tensors
 *     (int32) and prefill's float32 statistics need 4-byte alignment only.
 *   - Arguments are validated on the host before any device work; plx_decode_validate and
 *     plx_prefill_validate run the same checks without a context (no GPU needed).
 *   - Nothing launched here synchronizes; with a caller-provided workspace nothing allocates
 *     either, so plx_decode is safe inside CUDA graph capture.
 *   - A context may be used from several threads at once.
 *
 * Shapes (B batch, Hq query heads, Hkv kv heads, D head dim in {64, 128, 256}, Hq % Hkv == 0)
 *   decode : q, r, out  [B, Hq, D] or [B, 1, Hq, D]
 *            k, v       contiguous [B, Lmax, Hkv, D], or paged [num_pages, page_size, Hkv, D]
 *                       with block_table [B, max_pages] int32 and cache_seqlens [B] int32
 *            cache_seqlens may also be given with a contiguous cache (each sequence's length).
 *            Multi-token decode (speculative verification): q, r, out [B, Tq, Hq, D], Tq > 1,
 *            the cache already holding the Tq new tokens; query t sees keys
 *            j <= cache_seqlens[b] - Tq + t (causal among themselves). It runs as extend (the
 *            prefill kernels over the same cache): num_splits must be 0, a variant must be a
 *            prefill key, no workspace is used, and a contiguous cache takes no cache_seqlens.
 *   prefill: q, r, out  [B, Lq, Hq, D], k, v [B, Lk, Hkv, D] (causal, aligned to the key end)
 *            or packed  q, r, out [Tq, Hq, D], k, v [Tk, Hkv, D] with cu_seqlens_q/k int32
 *                       [B + 1] and max_seqlen_q/k; or k, v a paged cache (extend, see
 *                       plx_prefill_args.block_table).
 *            lse, tbar (optional float32 outputs, see plx_prefill_args): [B, Hq, Lq], or
 *                       [Hq, Tq] packed.
 *   r.data == NULL selects plain softmax attention (probe none).
 *
 * Windows
 *   Ours: window = W > 0 lets query row i (of Lq rows against Lk keys) see keys j with
 *   Lk - Lq + i - W < j <= Lk - Lq + i: W keys, its own position included; 0 = no window.
 *   FlashAttention's window_size = (left, right) is accepted too, as window_left and
 *   window_right: query position i' = Lk - Lq + i sees keys [i' - left, i' + right], left -1
 *   meaning unlimited. So left -1 is window 0 and left >= 0 is window left + 1. The kernels
 *   are causal (decode sees the whole cache), so right must be 0 (what FlashAttention's
 *   causal=True uses) or -1, which means the same here: no key after the query's position
 *   is ever seen. Both fields PLX_WINDOW_SIZE_UNSET (the _init default) = not given; set
 *   both or neither. window 0 defers to window_size; a nonzero window given with a
 *   window_size must name the same window. Start from plx_*_args_init: a zero-filled
 *   struct reads window_size (0, 0), a window of one key.
 */
#ifndef PARALLAX_PARALLAX_H_
#define PARALLAX_PARALLAX_H_

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#define PLX_API
#else
#define PLX_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define PLX_VERSION_MAJOR 0
#define PLX_VERSION_MINOR 1
#define PLX_VERSION_PATCH 0
#define PLX_MAX_DIMS 4
#define PLX_VARIANT_KEY_MAX 256
#define PLX_DEVICE_NAME_MAX 256
/* window_left / window_right not given (see "Windows" above). */
#define PLX_WINDOW_SIZE_UNSET INT32_MIN

typedef enum plx_status {
  PLX_OK = 0,
  PLX_ERROR_INVALID_ARGUMENT = 1, /* malformed or inconsistent arguments */
  PLX_ERROR_UNSUPPORTED = 2,      /* well-formed, but no kernel for it (e.g. head_dim 96) */
  PLX_ERROR_NO_DEVICE = 3,        /* no CUDA driver or device */
  PLX_ERROR_COMPILE = 4,          /* NVRTC failed to compile a kernel */
  PLX_ERROR_CUDA = 5,             /* a CUDA driver call failed */
  PLX_ERROR_OUT_OF_MEMORY = 6,    /* device allocation failed */
  PLX_ERROR_INTERNAL = 7          /* anything else (a bug: please report) */
} plx_status;

typedef enum plx_dtype {
  PLX_DTYPE_UNSET = 0, /* zero-initialised descriptors are rejected, not guessed */
  PLX_BF16 = 1,
  PLX_FP16 = 2,
  PLX_INT32 = 3,
  PLX_FLOAT32 = 4 /* prefill's optional lse / tbar outputs only */
} plx_dtype;

typedef enum plx_affine {
  PLX_AFFINE_PLAIN = 0,    /* Parallax */
  PLX_AFFINE_AMPLIFIED = 1 /* LLA's boundary factor kept, guarded by eps */
} plx_affine;

/* How a kernel variant was picked, strongest first. */
typedef enum plx_choice {
  PLX_CHOICE_EXPLICIT = 0, /* the caller's variant key */
  PLX_CHOICE_EXACT = 1,    /* tuned for exactly this problem */
  PLX_CHOICE_NEAREST = 2,  /* tuned for a nearby problem */
  PLX_CHOICE_DEFAULT = 3   /* built-in default schedule */
} plx_choice;

typedef struct plx_context plx_context;

typedef struct plx_tensor {
  void* data;                     /* device pointer; NULL = tensor absent (where optional) */
  plx_dtype dtype;
  int32_t ndim;                   /* 1..PLX_MAX_DIMS */
  int64_t shape[PLX_MAX_DIMS];
  int64_t strides[PLX_MAX_DIMS];  /* elements; all zero = contiguous row-major */
} plx_tensor;

typedef struct plx_context_options {
  int32_t device;        /* CUDA device ordinal */
  const char* db_path;   /* tuned-config database; NULL or "" = none */
  const char* cache_dir; /* compiled binaries; NULL or "" = $PARALLAX_CACHE_DIR or ~/.cache/parallax */
} plx_context_options;

typedef struct plx_device_info {
  int32_t ordinal;
  char name[PLX_DEVICE_NAME_MAX];
  int32_t cc_major, cc_minor;
  int32_t sm_count;
  int64_t mem_bytes;
} plx_device_info;

typedef struct plx_decode_args {
  plx_tensor q, r, k, v, out;
  plx_tensor block_table;   /* optional int32 [B, max_pages]: paged KV (page_size = k.shape[1]) */
  plx_tensor cache_seqlens; /* optional int32 [B]; required with block_table */
  float qk_scale;           /* bandwidth tau; < 0: 1/sqrt(D); 0: uniform weights */
  int32_t window;           /* sliding window in keys; 0 = none (see "Windows") */
  plx_affine affine;
  float eps;                /* amplified-affine guard (> 0) */
  const char* variant;      /* explicit variant key; NULL or "" = runtime choice */
  int32_t num_splits;       /* split-KV count; 0 = auto */
  void* workspace;          /* device scratch; NULL = runtime-managed (may allocate) */
  size_t workspace_bytes;
  int32_t window_left;      /* FlashAttention's window_size (left, right), see "Windows"; */
  int32_t window_right;     /* both PLX_WINDOW_SIZE_UNSET = not given */
  /* The longest live length, max_b cache_seqlens[b], known on the host: the kernel, its split
   * count and the workspace are then chosen for the live batch rather than for the cache's
   * capacity (max_pages x page_size paged, Lmax contiguous), which is what -1, the _init
   * default, plans for. Otherwise 0..capacity; without cache_seqlens every sequence has Lmax
   * keys, so only Lmax. Only the plan reads it: the kernels still take each sequence's length
   * from cache_seqlens and read all of its keys, so a hint below some cache_seqlens[b] is
   * not an error and the results stay right (to rounding, as with any split count); only
   * the plan was made for shorter sequences than it serves, which may be slower. */
  int32_t max_seqlen_k;
} plx_decode_args;

typedef struct plx_prefill_args {
  plx_tensor q, r, k, v, out;
  plx_tensor cu_seqlens_q;  /* optional int32 [B + 1]: packed (varlen) layout */
  plx_tensor cu_seqlens_k;  /* given exactly when cu_seqlens_q is */
  int32_t max_seqlen_q;     /* packed only: longest query / key sequence */
  int32_t max_seqlen_k;
  float qk_scale;
  int32_t window;
  plx_affine affine;
  float eps;
  const char* variant;
  /* Optional outputs for a backward pass (data NULL = not written), float32 [B, Hq, Lq], or
   * [Hq, Tq] packed, rows contiguous; given together they must share strides. Per query row,
   * with w_j = exp(tau q.k_j - lse) over its visible keys j:
   *   lse  = ln(sum_j exp(tau q.k_j))  (natural log, FlashAttention's softmax_lse)
   *   tbar = sum_j w_j (r.k_j)         (the weighted mean probe score; 0 for probe none)
   * A row without visible keys gets lse = -inf, tbar = 0. The output is
   * sum_j w_j (1 - (r.k_j - tbar)) v_j (amplified: (r.k_j - tbar) / delta, delta = 1 -
   * (tbar - r.q)), so a backward pass recomputes every weight from lse and tbar. */
  plx_tensor lse;
  plx_tensor tbar;
  int32_t window_left;      /* as in plx_decode_args */
  int32_t window_right;
  /* Extend over a paged cache (chunked prefill, prefix-cache hits, speculative verification):
   * k, v are [num_pages, page_size, Hkv, D] (page_size a power of two in 1..1024), block_table
   * int32 [B, max_pages] names each sequence's pages, seqused_k int32 [B] its key count. Each
   * sequence's queries are its last keys (the causal mask aligned to the end of seqused_k[b]);
   * q/r/out stay [B, Lq, Hq, D] or packed [Tq, Hq, D] with cu_seqlens_q (cu_seqlens_k absent).
   * max_seqlen_k, if >= 0, bounds seqused_k (it picks the kernel; -1 = the table's capacity).
   * Slots past seqused_k[b] are never read. Graph-safe: nothing is read on the host. */
  plx_tensor block_table;
  plx_tensor seqused_k;
} plx_prefill_args;

/* Plans: plan once per step, run per layer.
 *
 * plx_*_plan_create resolves what a call would launch (kernel variant, split count,
 * workspace) from host-side information only: the tensors' dtypes and shapes and the options,
 * decode's max_seqlen_k included. args is checked as plx_decode / plx_prefill check it, data
 * pointers too, but nothing behind a pointer is read, then or later (a plan keeps which
 * tensors were given, never uses their buffers). Creation also compiles the kernel if needed
 * and reserves the buffers the runtime owns for it (the split merge's counters, persistent
 * prefill's tile counters, and the split-KV workspace when args->workspace is NULL), so runs
 * neither compile nor allocate: create plans outside CUDA graph capture (creation may
 * allocate), run them inside.
 *
 * plx_*_plan_run launches the planned kernel over the tensors of its own args, which must
 * pose the plan's problem: the same tensors given, each with the plan's dtype and shape, and
 * the same window, window_left/right, affine, variant, num_splits and max_seqlen_k (prefill:
 * max_seqlen_q/k); a difference is PLX_ERROR_INVALID_ARGUMENT naming the field. Data
 * pointers, strides, qk_scale, eps and the workspace are the run's own. A run validates its
 * arguments as plx_decode does, never synchronizes and, with a caller workspace or the one
 * reserved at creation, never allocates: graph-safe. ctx must be the plan's context. A prefill
 * plan of the sm_90a family (plx_plan_info.variant on path wgmma) reads through TMA, which
 * needs 16-byte aligned addresses and strides: a run over tensors it cannot read fails.
 * Multi-token decode (q [B, Tq, Hq, D], Tq > 1) plans as extend (one kernel, no splits).
 *
 * A plan is immutable, so runs may come from several threads at once; it holds host memory
 * only and may be destroyed before or after its context. */
typedef struct plx_decode_plan plx_decode_plan;
typedef struct plx_prefill_plan plx_prefill_plan;

typedef struct plx_plan_info {
  char variant[PLX_VARIANT_KEY_MAX]; /* canonical key of the chosen kernel */
  plx_choice choice;
  int32_t num_splits;                /* decode: split-KV count the launch uses; prefill: 1 */
  size_t workspace_bytes;            /* decode: scratch the launch needs; prefill: 0 */
} plx_plan_info;

/* Library version, "MAJOR.MINOR.PATCH". */
PLX_API const char* plx_version(void);
/* "PLX_OK", "PLX_ERROR_INVALID_ARGUMENT", ... */
PLX_API const char* plx_status_string(plx_status status);
/* "explicit", "exact", "nearest", "default". */
PLX_API const char* plx_choice_string(plx_choice choice);
/* Message of the last failing call on this thread ("" if none). Valid until the next failing
 * call on the same thread. */
PLX_API const char* plx_last_error(void);

/* options == NULL: device 0, no database, default cache directory. */
PLX_API plx_status plx_context_create(const plx_context_options* options, plx_context** ctx);
/* NULL is a no-op. Finish all work launched with ctx first. */
PLX_API void plx_context_destroy(plx_context* ctx);
PLX_API plx_status plx_context_get_device_info(const plx_context* ctx, plx_device_info* info);

/* Defaults: every tensor absent, qk_scale -1, window 0, plain affine, eps 1e-6, no variant,
 * num_splits 0, runtime-managed workspace, window_left/right PLX_WINDOW_SIZE_UNSET,
 * max_seqlen_k -1. */
PLX_API void plx_decode_args_init(plx_decode_args* args);
/* Host-only checks of shapes, dtypes, strides and options; needs no context or device. */
PLX_API plx_status plx_decode_validate(const plx_decode_args* args);
/* Bytes of workspace plx_decode needs for these arguments (may JIT-compile the kernel). */
PLX_API plx_status plx_decode_workspace_size(plx_context* ctx, const plx_decode_args* args,
                                             size_t* bytes);
/* The variant, choice, split count and workspace the call would use (may JIT-compile). */
PLX_API plx_status plx_decode_plan_info(plx_context* ctx, const plx_decode_args* args,
                                        plx_plan_info* info);
/* Launches on stream (a CUstream / cudaStream_t; NULL = the legacy default stream). */
PLX_API plx_status plx_decode(plx_context* ctx, const plx_decode_args* args, void* stream);
/* A decode plan (see "Plans" above); *plan is NULL on failure. */
PLX_API plx_status plx_decode_plan_create(plx_context* ctx, const plx_decode_args* args,
                                          plx_decode_plan** plan);
PLX_API plx_status plx_decode_plan_run(plx_context* ctx, const plx_decode_plan* plan,
                                       const plx_decode_args* args, void* stream);
PLX_API plx_status plx_decode_plan_get_info(const plx_decode_plan* plan, plx_plan_info* info);
/* NULL is a no-op. */
PLX_API void plx_decode_plan_destroy(plx_decode_plan* plan);

/* Defaults: every tensor absent (lse, tbar, block_table, seqused_k included), max_seqlen_q/k -1, qk_scale -1,
 * window 0, plain affine, eps 1e-6, no variant, window_left/right PLX_WINDOW_SIZE_UNSET. */
PLX_API void plx_prefill_args_init(plx_prefill_args* args);
PLX_API plx_status plx_prefill_validate(const plx_prefill_args* args);
PLX_API plx_status plx_prefill_plan_info(plx_context* ctx, const plx_prefill_args* args,
                                         plx_plan_info* info);
PLX_API plx_status plx_prefill(plx_context* ctx, const plx_prefill_args* args, void* stream);
/* A prefill plan (see "Plans" above); *plan is NULL on failure. */
PLX_API plx_status plx_prefill_plan_create(plx_context* ctx, const plx_prefill_args* args,
                                           plx_prefill_plan** plan);
PLX_API plx_status plx_prefill_plan_run(plx_context* ctx, const plx_prefill_plan* plan,
                                        const plx_prefill_args* args, void* stream);
PLX_API plx_status plx_prefill_plan_get_info(const plx_prefill_plan* plan, plx_plan_info* info);
/* NULL is a no-op. */
PLX_API void plx_prefill_plan_destroy(plx_prefill_plan* plan);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* PARALLAX_PARALLAX_H_ */
