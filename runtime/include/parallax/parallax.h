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
 *   - Kernels read with 16-byte vector loads: the data pointers of q, r, k, v, out and vbar
 *     (and plx_merge_states's 16-bit tensors) must be 16-byte aligned and their non-last
 *     strides multiples of 8 elements. Index tensors (int32) and the float32 statistics (lse,
 *     tbar) need 4-byte alignment only.
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
 *            j <= cache_seqlens[b] - Tq + t (causal among themselves). On sm_90 with Tq <= 16
 *            (8 at D 256) over a contiguous cache or pages of >= 8 keys, the decode kernels run
 *            it (the decode_sm90 family: split-KV, each K/V tile read once for all Tq tokens;
 *            keys "decode-...-qTq"), taking num_splits, a workspace and a decode key as one
 *            token does -- without a key, where they are expected to be faster: Tq x Hq/Hkv <=
 *            32 (any Tq at B = 1), and for MHA B x Hkv < 256. Otherwise, with more tokens,
 *            with statistics or with a prefill key named, it runs as extend (the prefill kernels
 *            over the same cache): num_splits must be 0, a variant must be a prefill key, no
 *            workspace is used, and a contiguous cache takes no cache_seqlens.
 *            plx_decode_validate, which has no device, accepts either form.
 *   prefill: q, r, out  [B, Lq, Hq, D], k, v [B, Lk, Hkv, D] (causal, aligned to the key end)
 *            or packed  q, r, out [Tq, Hq, D], k, v [Tk, Hkv, D] with cu_seqlens_q/k int32
 *                       [B + 1] and max_seqlen_q/k; or k, v a paged cache (extend, see
 *                       plx_prefill_args.block_table).
 *            lse, tbar (optional float32 outputs, see plx_prefill_args): [B, Hq, Lq], or
 *                       [Hq, Tq] packed; vbar (optional) like out.
 *            causal = 0 (plx_prefill_args.causal) lets every query row see all keys of its
 *                       sequence (the shared prefix of a cascade; no window then).
 *   merge  : two partial attentions of the same rows over disjoint keys, in the layouts the
 *            calls above write (plx_merge_states, "Statistics and merging" below).
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
 *   is ever seen. A non-causal prefill (plx_prefill_args.causal = 0) takes no window:
 *   window 0 and window_size unset or (-1, -1). Both fields PLX_WINDOW_SIZE_UNSET (the _init default) = not given; set
 *   both or neither. window 0 defers to window_size; a nonzero window given with a
 *   window_size must name the same window. Start from plx_*_args_init: a zero-filled
 *   struct reads window_size (0, 0), a window of one key.
 *
 * Compatibility (the ABI; docs/abi.md has the details)
 *   - Every struct passed to a call except plx_tensor starts with `size_t struct_size`, the
 *     sizeof the caller was compiled with. Start every one from its _init, which sets it
 *     (plx_context_options_init, plx_decode_args_init, plx_prefill_args_init,
 *     plx_merge_args_init, and for the output structs plx_device_info_init and
 *     plx_plan_info_init), then set fields. A call checks struct_size before anything else and
 *     refuses a size it does not know with PLX_ERROR_INVALID_ARGUMENT, e.g. (64-bit Linux)
 *     "plx_decode: plx_decode_args.struct_size=0: start from plx_decode_args_init (this
 *     library expects 872)".
 *   - Within a major version (while it is 0, within a MAJOR.MINOR: 0.2.0 broke 0.1's ABI),
 *     fields are only appended to these structs, never removed, reordered or resized, and
 *     functions are only added. The library accepts every struct_size a struct has had in a
 *     release of its layout, up to its own sizeof; the fields a smaller (older) struct lacks
 *     read as their _init defaults. A struct_size larger than the library's own (a caller
 *     built against a newer parallax.h) is refused. Output structs (plx_device_info,
 *     plx_plan_info) are written up to the caller's struct_size only.
 *   - plx_tensor has no struct_size: it is embedded in the other structs, so its layout is
 *     frozen (changing it is a new ABI, like removing a field).
 *   - libparallax.so exports exactly the plx_* functions declared here; PLX_VERSION_* is the
 *     library's version (the build reads it from this header; plx_version() reports it).
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
#define PLX_VERSION_MINOR 2
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
  PLX_FLOAT32 = 4 /* the lse / tbar statistics only */
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

/* Embedded in the argument structs, so without a struct_size: its layout is frozen. */
typedef struct plx_tensor {
  void* data;                     /* device pointer; NULL = tensor absent (where optional) */
  plx_dtype dtype;
  int32_t ndim;                   /* 1..PLX_MAX_DIMS */
  int64_t shape[PLX_MAX_DIMS];
  int64_t strides[PLX_MAX_DIMS];  /* elements; all zero = contiguous row-major */
} plx_tensor;

/* Tuned configs are used by default. db_path names the tuning database (what `parallax tune`
 * writes); NULL or "" means the default location: $PARALLAX_DB when set, else
 * $XDG_DATA_HOME/parallax/tuner.db, else ~/.local/share/parallax/tuner.db (the CLI's default
 * too). "none" (as db_path or as $PARALLAX_DB) opts out: built-in defaults only. The database
 * is opened read-only and never created, written or migrated; one that does not exist just
 * has no tuned configs (no error, no file created; it is looked for again later, so a tune
 * run while the process lives is picked up). An existing file that cannot be read (damaged,
 * a newer schema) fails plx_context_create. */
typedef struct plx_context_options {
  size_t struct_size;    /* sizeof(plx_context_options): see "Compatibility" */
  int32_t device;        /* CUDA device ordinal */
  const char* db_path;   /* tuning database; NULL or "" = the default location, "none" = none */
  const char* cache_dir; /* compiled binaries; NULL or "" = $PARALLAX_CACHE_DIR or ~/.cache/parallax */
} plx_context_options;

/* Output of plx_context_get_device_info; start from plx_device_info_init. */
typedef struct plx_device_info {
  size_t struct_size; /* sizeof(plx_device_info): see "Compatibility" */
  int32_t ordinal;
  char name[PLX_DEVICE_NAME_MAX];
  int32_t cc_major, cc_minor;
  int32_t sm_count;
  int64_t mem_bytes;
} plx_device_info;

typedef struct plx_decode_args {
  size_t struct_size;       /* sizeof(plx_decode_args): see "Compatibility" */
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
  /* Optional statistics of each query row (data NULL = not written), as plx_prefill_args
   * defines them, so partial decodes merge (plx_merge_states): lse, tbar float32 [B, Hq] for
   * q [B, Hq, D], or [B, Hq, Tq] for q [B, Tq, Hq, D] (Tq >= 1: FlashAttention's
   * softmax_lse layout), last dimension contiguous; vbar like out. A decode that asks for
   * any of them runs as extend with Tq query tokens (the prefill kernels over the same cache,
   * as multi-token decode does), which is slower than the split-KV decode kernel: num_splits
   * must be 0, a variant must be a prefill key, no workspace is used, and a contiguous cache
   * takes no cache_seqlens. */
  plx_tensor lse;
  plx_tensor tbar;
  plx_tensor vbar;
} plx_decode_args;

typedef struct plx_prefill_args {
  size_t struct_size;       /* sizeof(plx_prefill_args): see "Compatibility" */
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
  /* Optional (data NULL = not written): each row's softmax output vbar = sum_j w_j v_j, same
   * dtype and shape as out (its own strides, same layout rules), zeros for a row without
   * visible keys; with lse and tbar it is what merging partial Parallax attentions needs
   * (plx_merge_states). For probe none it equals out. */
  plx_tensor vbar;
  /* 1 (the _init default): causal, the mask aligned to the end of the keys. 0: every query
   * row sees all keys of its sequence ([0, Lk), [0, seqused_k[b]) paged): a shared prefix of
   * a cascade. Non-causal takes no window: window must be 0, window_size (-1, -1) or unset. */
  int32_t causal;
} plx_prefill_args;

/* Statistics and merging partial attentions (plx_merge_states).
 *
 * Attention over the keys of a row split into disjoint parts (a shared prefix and each
 * sequence's own keys, KV split over devices, ...) merges exactly from each part's output
 * and statistics: lse (the part's log-sum-exp), tbar (its weighted mean probe score) and
 * vbar (its softmax output), as plx_prefill / plx_decode write them. lse alone merges
 * softmax attention (FlashAttention's way); a Parallax output mixes vbar with the
 * covariance term, so it needs tbar and vbar as well. With l_A = exp(lse_A - lse), lse =
 * ln(sum_A exp(lse_A)), tbar = sum_A l_A tbar_A and vbar = sum_A l_A vbar_A:
 *   probe none:   out = sum_A l_A out_A
 *   plain:        out = sum_A l_A (out_A + (tbar - tbar_A) vbar_A)
 *   amplified:    C_A = (vbar_A - out_A) g(1 - (tbar_A - r.q)),
 *                 out = vbar - sum_A l_A (C_A + (tbar_A - tbar) vbar_A) / g(1 - (tbar - r.q))
 * (g the eps guard of the amplified affine), so amplified needs q and r for r.q. A part
 * with lse = -inf saw no key and counts for nothing; two such parts give out = 0, lse =
 * -inf, tbar = 0, vbar = 0. Results match attention over the union to the 16-bit outputs'
 * rounding (the merge reads the parts' 16-bit out and vbar and computes in fp32). */
typedef enum plx_probe {
  PLX_PROBE_NONE = 0,   /* softmax attention: out is its own vbar, tbar unused */
  PLX_PROBE_LEARNED = 1 /* Parallax */
} plx_probe;

typedef struct plx_merge_args {
  size_t struct_size; /* sizeof(plx_merge_args): see "Compatibility" */
  /* The two parts, each as a call wrote it: out and vbar 16-bit, lse and tbar float32.
   * vbar_* and tbar_* are required for probe learned and ignored (may be absent) for none. */
  plx_tensor out_a, vbar_a, lse_a, tbar_a;
  plx_tensor out_b, vbar_b, lse_b, tbar_b;
  /* The merged output (required) and its statistics (optional), so merges chain. An output
   * may be the very tensor of an input (same pointer, shape and strides: in place); any
   * other overlap between an output and a tensor of the call is refused. */
  plx_tensor out;
  plx_tensor vbar, lse, tbar;
  plx_tensor q, r;  /* the rows' queries and probes, like out: amplified (learned) only */
  plx_probe probe;  /* _init: PLX_PROBE_LEARNED */
  plx_affine affine;
  float eps;        /* amplified guard, as the calls that made the parts used */
  /* Layouts (every 16-bit tensor shaped like out, every statistic like lse_a; strides free
   * with a contiguous last dimension for the 16-bit ones):
   *   out [B, L, Hq, D], stats [B, Hq, L]  prefill padded, multi-token decode (L = Tq)
   *   out [B, 1, Hq, D], stats [B, Hq]     one-token decode, 4-D q
   *   out [B, Hq, D],    stats [B, Hq]     one-token decode (packed = 0, the default)
   *   out [Tq, Hq, D],   stats [Hq, Tq]    packed prefill (packed = 1) */
  int32_t packed;
} plx_merge_args;

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
 * max_seqlen_q/k and causal); a difference is PLX_ERROR_INVALID_ARGUMENT naming the field
 * (statistics included: a plan made without vbar does not run with it, nor the reverse). Data
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

/* Output of plx_*_plan_info and plx_*_plan_get_info; start from plx_plan_info_init. */
typedef struct plx_plan_info {
  size_t struct_size;                /* sizeof(plx_plan_info): see "Compatibility" */
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

/* Defaults: device 0, db_path and cache_dir NULL (the default locations). */
PLX_API void plx_context_options_init(plx_context_options* options);
/* options == NULL: the defaults of plx_context_options_init. */
PLX_API plx_status plx_context_create(const plx_context_options* options, plx_context** ctx);
/* NULL is a no-op. Finish all work launched with ctx first. */
PLX_API void plx_context_destroy(plx_context* ctx);
/* Zeroes *info and sets its struct_size. */
PLX_API void plx_device_info_init(plx_device_info* info);
PLX_API plx_status plx_context_get_device_info(const plx_context* ctx, plx_device_info* info);
/* Zeroes *info and sets its struct_size: for the plan reports below. */
PLX_API void plx_plan_info_init(plx_plan_info* info);

/* Defaults: every tensor absent (lse, tbar, vbar included), qk_scale -1, window 0, plain
 * affine, eps 1e-6, no variant, num_splits 0, runtime-managed workspace, window_left/right
 * PLX_WINDOW_SIZE_UNSET, max_seqlen_k -1. */
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

/* Defaults: every tensor absent (lse, tbar, vbar, block_table, seqused_k included), max_seqlen_q/k -1,
 * qk_scale -1, window 0, plain affine, eps 1e-6, no variant, window_left/right
 * PLX_WINDOW_SIZE_UNSET, causal 1. */
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

/* Defaults: every tensor absent, probe PLX_PROBE_LEARNED, plain affine, eps 1e-6, packed 0. */
PLX_API void plx_merge_args_init(plx_merge_args* args);
/* Host-only checks of plx_merge_states's arguments; needs no context or device. */
PLX_API plx_status plx_merge_validate(const plx_merge_args* args);
/* Merges the two parts on stream (see "Statistics and merging partial attentions"). One small
 * kernel per (dtype, head_dim, probe, affine), compiled on the first call that needs it: make
 * that call outside CUDA graph capture; later calls never compile, allocate or synchronize. */
PLX_API plx_status plx_merge_states(plx_context* ctx, const plx_merge_args* args, void* stream);

/* The backward of a prefill (docs/backward.md): the gradients dq, dr, dk, dv of
 * L = sum(dout * out) for a plx_prefill with the same q, r, k, v and options, from its out
 * and its statistics lse, tbar, vbar (ask plx_prefill for them). Layouts as plx_prefill:
 * q, r, out, dout, vbar, dq, dr [B, Lq, Hq, D] or packed [Tq, Hq, D] with cu_seqlens_q/k and
 * max_seqlen_q/k; k, v, dk, dv [B, Lk, Hkv, D] or [Tk, Hkv, D]; lse, tbar float32 [B, Hq, Lq]
 * or [Hq, Tq]. r.data NULL: probe none (then r, dr, tbar unused and vbar may be absent: it
 * equals out). Contiguous K/V only (no paged cache); window as plx_prefill_args.window (the
 * window_size spelling is not taken here); causal 0 takes no window.
 * The workspace is the caller's: a device buffer of plx_prefill_backward_workspace_size bytes,
 * 16-byte aligned (float32 dq/dr accumulators and 8 coefficients per query row). dq and dr
 * sum over key blocks with float32 atomics, so their rounding may differ between runs. */
typedef struct plx_prefill_backward_args {
  size_t struct_size; /* sizeof(plx_prefill_backward_args): see "Compatibility" */
  plx_tensor q, r, k, v, out, dout;
  plx_tensor vbar, lse, tbar;
  plx_tensor dq, dr, dk, dv; /* outputs, like q, r, k, v */
  plx_tensor cu_seqlens_q, cu_seqlens_k;
  int32_t max_seqlen_q; /* packed only: longest query / key sequence */
  int32_t max_seqlen_k;
  float qk_scale;
  int32_t window;
  plx_affine affine;
  float eps;
  int32_t causal;
  const char* variant; /* a "bwd-..." key; NULL or "" = the runtime's choice: the tuned config
                        * of the call's prefill bucket (exact, else nearest), else the default */
  void* workspace;
  size_t workspace_bytes;
} plx_prefill_backward_args;

/* Defaults: every tensor absent, max_seqlen -1, qk_scale -1 (1/sqrt(D)), window 0, plain
 * affine, eps 1e-6, causal 1, no variant, no workspace. */
PLX_API void plx_prefill_backward_args_init(plx_prefill_backward_args* args);
/* The workspace bytes the call needs (checks the arguments, workspace aside; no device). */
PLX_API plx_status plx_prefill_backward_workspace_size(const plx_prefill_backward_args* args, size_t* bytes);
/* The variant plx_prefill_backward would run and where it came from (explicit, exact,
 * nearest, default), with num_splits 1 and workspace_bytes the workspace the call needs;
 * launches nothing. */
PLX_API plx_status plx_prefill_backward_plan_info(plx_context* ctx, const plx_prefill_backward_args* args,
                                                  plx_plan_info* info);
/* Three launches on stream; the first call of a variant compiles it (make it outside graph
 * capture); later calls neither compile, allocate nor synchronize. The choice is remembered
 * per (problem, bucket) for a second, so repeated calls do not read the tuning database. */
PLX_API plx_status plx_prefill_backward(plx_context* ctx, const plx_prefill_backward_args* args, void* stream);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* PARALLAX_PARALLAX_H_ */
