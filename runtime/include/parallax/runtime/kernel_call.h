// A kernel call's arguments: as a C++ caller gives them (DecodeArgs / PrefillArgs) and
// checked (DecodeCall / PrefillCall), which is the problem the call poses plus the kernel's
// parameter struct (kernel_abi.h) built once. The C API's validation builds the checked
// form directly from its tensor descriptors, so a launch never copies arguments field by
// field: it takes the parameters and adds only what the plan decides (split count,
// workspace and counter pointers).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "parallax/codegen/kernel_abi.h"
#include "parallax/codegen/variant.h"

namespace parallax {

struct DecodeArgs {
  DType dtype = DType::kBF16;
  int batch = 0, num_q_heads = 0, num_kv_heads = 0, head_dim = 0;
  // Query tokens per sequence (Tq): 1, or 2..16 for multi-token decode, which the sm_90a
  // family (decode_sm90) serves: token t sees keys j <= seqlen - Tq + t. Other devices
  // have no decode for it (the C API runs it as extend).
  int queries = 1;
  const void* q = nullptr;  // [B, Tq, Hq, D] ([B, Hq, D] when Tq = 1)
  const void* r = nullptr;  // like q; null = softmax (probe none)
  const void* k = nullptr;  // contiguous [B, Lmax, Hkv, D] or paged [pages, page_size, Hkv, D]
  const void* v = nullptr;
  void* out = nullptr;      // like q
  int64_t q_stride_b = 0, q_stride_h = 0, r_stride_b = 0, r_stride_h = 0;
  int64_t o_stride_b = 0, o_stride_h = 0;
  int64_t q_stride_t = 0, r_stride_t = 0, o_stride_t = 0;  // between query tokens (Tq > 1)
  int64_t k_stride_0 = 0, k_stride_1 = 0, k_stride_h = 0;  // batch|page, token|slot, head
  int64_t v_stride_0 = 0, v_stride_1 = 0, v_stride_h = 0;
  const int* seqlens = nullptr;  // device [B]; null = every sequence has `seqlen` keys
  int seqlen = 0;                // uniform length, or an upper bound of seqlens (plans splits)
  const int* block_table = nullptr;  // device [B, block_table_stride]; null = contiguous
  int block_table_stride = 0;
  int page_size = 0;
  // Paged: the pool's page count (k.shape[0]). The sm_90a family reads pages through TMA
  // maps, which need the pool's extent; 0 (unknown) keeps such calls on the portable family.
  int64_t num_pages = 0;
  float qk_scale = -1.f;  // < 0: 1/sqrt(D)
  int window = 0;
  Affine affine = Affine::kPlain;
  float eps = 1e-6f;
  std::string variant_key;  // explicit choice (must match the problem)
  int num_splits = 0;       // 0: the variant's, else auto from occupancy
  void* workspace = nullptr;  // caller-owned; null = runtime-managed (grows, never shrinks)
  size_t workspace_bytes = 0;
};

struct PrefillArgs {
  DType dtype = DType::kBF16;
  int batch = 0, num_q_heads = 0, num_kv_heads = 0, head_dim = 0;
  const void* q = nullptr;  // [B, Lq, Hq, D] (or packed [total, Hq, D] with cu_seqlens_q)
  const void* r = nullptr;  // like q; null = softmax
  const void* k = nullptr;  // [B, Lk, Hkv, D] (packed [total, Hkv, D]), or paged [pages, page_size, Hkv, D]
  const void* v = nullptr;
  void* out = nullptr;      // like q
  int64_t q_stride_b = 0, q_stride_l = 0, q_stride_h = 0;
  int64_t r_stride_b = 0, r_stride_l = 0, r_stride_h = 0;
  int64_t k_stride_b = 0, k_stride_l = 0, k_stride_h = 0;
  int64_t v_stride_b = 0, v_stride_l = 0, v_stride_h = 0;
  int64_t o_stride_b = 0, o_stride_l = 0, o_stride_h = 0;
  const int* cu_seqlens_q = nullptr;  // device int32 [B+1]; null = uniform seqlen_q
  const int* cu_seqlens_k = nullptr;
  int seqlen_q = 0;  // uniform length or the maximum over sequences
  int seqlen_k = 0;  // paged: an upper bound of seqused_k (0 = unknown; plans only)
  // Extend over a paged cache: block_table device int32 [B, block_table_stride] names the
  // pages of each sequence, seqused_k device int32 [B] its key count; k/v strides _b and _l
  // are then the page and slot strides. The queries are each sequence's last keys (causal
  // mask aligned to the end); cu_seqlens_k must be null (cu_seqlens_q may pack q).
  const int* block_table = nullptr;
  int block_table_stride = 0;
  const int* seqused_k = nullptr;
  int page_size = 0;
  // Packed (cu_seqlens): rows of the packed q and k tensors; paged: total_k is the pool's
  // page count (k.shape[0]). The sm_90a family reads them through TMA maps, which need the
  // extent; 0 (unknown) keeps such calls on the portable family. Ignored for padded batches
  // (the extent is seqlen).
  int64_t total_q = 0, total_k = 0;
  float qk_scale = -1.f;
  int window = 0;
  Affine affine = Affine::kPlain;
  float eps = 1e-6f;
  std::string variant_key;
  // Optional per-row statistics for a backward pass (kernel_abi.h defines them): device
  // float [B, Hq, Lq] (packed: [Hq, total_q]), rows contiguous; null = not written. lse and
  // tbar share the strides; both 0 = contiguous (packed then needs total_q).
  float* lse = nullptr;
  float* tbar = nullptr;
  int64_t stats_stride_b = 0, stats_stride_h = 0;
  // Optional: each row's softmax output vbar (kernel_abi.h), what a merge of partial Parallax
  // attentions needs besides lse and tbar: like out (dtype, [B, Lq, Hq, D] or packed), its
  // own strides (all 0: out's); null = not written.
  void* vbar = nullptr;
  int64_t vbar_stride_b = 0, vbar_stride_l = 0, vbar_stride_h = 0;
  // false: every query row sees all keys of its sequence (no window then); true: the causal
  // mask aligned to the end of the keys.
  bool causal = true;
};

struct DecodeCall {
  Problem problem;  // mode kDecode; paged exactly when params.block_table is set
  Algorithm algorithm;
  // Everything but num_splits, part_stats, part_o and counters, which the launch fills in.
  PlxDecodeParams params{};
  std::string variant_key;    // explicit choice; "" = tuned or default
  int num_splits = 0;         // asked for: 0 = the variant's, else auto
  void* workspace = nullptr;  // caller-owned split-KV scratch; null = runtime-managed
  size_t workspace_bytes = 0;
  int64_t num_pages = 0;      // paged: the pool's page count (see DecodeArgs)
};

struct PrefillCall {
  Problem problem;  // mode kPrefill; paged exactly when params.block_table is set
  Algorithm algorithm;
  PlxPrefillParams params{};  // complete: nothing in a prefill launch depends on the plan
  std::string variant_key;
  int64_t total_q = 0, total_k = 0;  // packed: rows of q and k (see PrefillArgs)
};

// qk_scale (< 0: 1/sqrt(head_dim)) in the kernels' units: times log2(e).
float ScaleLog2(float qk_scale, int head_dim);

// A C++ caller's arguments as kernel parameters and as a call, field for field and unchecked.
PlxDecodeParams DecodeParams(const DecodeArgs& a);
PlxPrefillParams PrefillParams(const PrefillArgs& a);
DecodeCall ToDecodeCall(const DecodeArgs& a);
PrefillCall ToPrefillCall(const PrefillArgs& a);

// The runtime's own checks, whichever front end built the call (Runtime::PlanDecode /
// PlanPrefill run them; so does the C API's validation). Messages start with the argument.
absl::Status CheckDecodeCall(const DecodeCall& c);
absl::Status CheckPrefillCall(const PrefillCall& c);

}  // namespace parallax
