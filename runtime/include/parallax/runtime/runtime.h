// The Parallax runtime: picks a kernel variant, JIT-compiles it once with NVRTC for the
// device in hand (memory + on-disk binary cache), and launches it on the caller's stream.
//
// Plan/run split: Plan*() resolves the variant, the launch grid and the workspace size
// (host only, cheap after the first call); Run*() launches. Decode()/Prefill() do both.
// No call allocates or synchronizes when the caller provides the workspace, so launches are
// CUDA-graph safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "parallax/codegen/kernel_abi.h"
#include "parallax/codegen/variant.h"
#include "parallax/runtime/device.h"

namespace parallax {

// Where a variant came from, strongest first.
enum class Choice { kExplicit, kTunedExact, kTunedNearest, kDefault };
const char* ToString(Choice c);

struct RuntimeOptions {
  int device = 0;
  std::string cache_dir;  // compiled binaries; "" = $PARALLAX_CACHE_DIR or ~/.cache/parallax
  std::string db_path;    // tuning DB: tuned configs + compiled binaries; "" = none (binaries
                          // then go to cache_dir as files)
};

struct DecodeArgs {
  DType dtype = DType::kBF16;
  int batch = 0, num_q_heads = 0, num_kv_heads = 0, head_dim = 0;
  const void* q = nullptr;  // [B, Hq, D]
  const void* r = nullptr;  // [B, Hq, D]; null = softmax (probe none)
  const void* k = nullptr;  // contiguous [B, Lmax, Hkv, D] or paged [pages, page_size, Hkv, D]
  const void* v = nullptr;
  void* out = nullptr;      // [B, Hq, D]
  int64_t q_stride_b = 0, q_stride_h = 0, r_stride_b = 0, r_stride_h = 0;
  int64_t o_stride_b = 0, o_stride_h = 0;
  int64_t k_stride_0 = 0, k_stride_1 = 0, k_stride_h = 0;  // batch|page, token|slot, head
  int64_t v_stride_0 = 0, v_stride_1 = 0, v_stride_h = 0;
  const int* seqlens = nullptr;  // device [B]; null = every sequence has `seqlen` keys
  int seqlen = 0;                // uniform length, or an upper bound of seqlens (plans splits)
  const int* block_table = nullptr;  // device [B, block_table_stride]; null = contiguous
  int block_table_stride = 0;
  int page_size = 0;
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
  const void* k = nullptr;  // [B, Lk, Hkv, D]
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
  int seqlen_k = 0;
  float qk_scale = -1.f;
  int window = 0;
  Affine affine = Affine::kPlain;
  float eps = 1e-6f;
  std::string variant_key;
};

struct DecodePlan {
  Variant variant;
  Choice choice = Choice::kDefault;
  int num_splits = 1;
  size_t workspace_bytes = 0;
};

struct LoadedKernel;  // module + functions, owned by the runtime
class TunedStore;    // tuning DB access (runtime/src/tuned_store.h)

class Runtime {
 public:
  static absl::StatusOr<std::unique_ptr<Runtime>> Create(const RuntimeOptions& options);
  ~Runtime();

  const DeviceInfo& device() const { return device_; }

  absl::StatusOr<DecodePlan> PlanDecode(const DecodeArgs& a);
  // With a variant the caller already holds instead of a.variant_key (which must be empty):
  // for the tuner's worker, whose test-only variants (parsed with an explicit opt-in) no key
  // path of the runtime accepts.
  absl::StatusOr<DecodePlan> PlanDecode(const DecodeArgs& a, const Variant& v);
  absl::Status RunDecode(const DecodePlan& plan, const DecodeArgs& a, CUstream stream);
  absl::Status Decode(const DecodeArgs& a, CUstream stream);

  absl::StatusOr<Variant> PlanPrefill(const PrefillArgs& a, Choice* choice = nullptr);
  absl::Status RunPrefill(const Variant& v, const PrefillArgs& a, CUstream stream);
  absl::Status Prefill(const PrefillArgs& a, CUstream stream);

  // Workspace bytes a decode with these sizes needs for num_splits partials.
  static size_t DecodeWorkspaceBytes(const Variant& v, int batch, int num_splits);
  // Split count filling the device: enough CTAs for the resident slots, keys per split >= 2 tiles.
  int AutoSplits(const Variant& v, int batch, int max_seqlen);

  // Binds the runtime's (primary) context to the calling thread, for callers that then use
  // the driver API themselves (tests, benchmarks).
  absl::Status MakeCurrent();

  // Compiles (or loads from cache) without launching; for tools and benchmarks.
  absl::StatusOr<const LoadedKernel*> Load(const Variant& v);

  // Optional source of tuned configs (set by the search layer; the runtime core has no DB code).
  using TunedLookup = std::function<absl::StatusOr<std::pair<std::string, Choice>>(
      const Problem&, const Algorithm&, int batch, int seqlen)>;
  void SetTunedLookup(TunedLookup f);
  TunedLookup tuned_lookup();  // the current one (empty: none), to chain another after it

 private:
  explicit Runtime(const RuntimeOptions& o, DeviceInfo d, CUcontext ctx);
  struct GrowBuffer {
    CUdeviceptr ptr = 0;
    size_t size = 0;
    std::vector<CUdeviceptr> retired;  // outgrown, kept until destruction (graphs may use them)
  };
  absl::StatusOr<void*> Ensure(GrowBuffer& buf, size_t bytes);
  absl::StatusOr<DecodePlan> PlanDecodeWith(const DecodeArgs& a, const Variant* given);

  RuntimeOptions options_;
  DeviceInfo device_;
  CUcontext ctx_ = nullptr;
  std::mutex mu_;
  std::unordered_map<std::string, std::unique_ptr<LoadedKernel>> kernels_;  // by variant key
  std::unordered_map<std::string, std::shared_ptr<std::mutex>> build_mu_;  // per variant key
  TunedLookup tuned_;
  // A non-explicit decode plan's choice per "<problem key>|<bucket>", reused for a second:
  // decode is planned on every call, and asking the tuning DB (SQLite) or a service each
  // time would cost more than the kernel; a second bounds how late new tuned configs show.
  struct ChoiceMemo {
    std::optional<Variant> variant;
    Choice choice = Choice::kDefault;
    std::chrono::steady_clock::time_point until;
  };
  std::unordered_map<std::string, ChoiceMemo> choice_memo_;  // under mu_
  std::unique_ptr<TunedStore> db_;  // when options.db_path is set
  GrowBuffer workspace_;  // split-KV partials when the caller passes none
  GrowBuffer counters_;   // fused-merge split counters (always runtime-owned)
};

// Built-in defaults, decent on sm_80 and sm_90 (used when nothing tuned applies).
Schedule DefaultDecodeSchedule(const Problem& p, const Algorithm& a);
Schedule DefaultPrefillSchedule(const Problem& p, const Algorithm& a);

}  // namespace parallax
