// Header-only C++ wrapper over the Parallax C API (parallax/parallax.h).
//
//   parallax::Context ctx;                       // device 0; throws parallax::Error on failure
//   plx_decode_args a = parallax::MakeDecodeArgs();  // defaults filled in
//   a.q = parallax::MakeTensor(q_ptr, PLX_BF16, {B, Hq, D});
//   ...
//   ctx.decode(a, stream);
//   parallax::PlannedDecode plan(ctx, a);       // plan once per step (parallax.h, "Plans") ...
//   plan.run(a, stream);                        // ... run per layer, a's tensors changed
//   plx_merge_args m = parallax::MakeMergeArgs(); // two partial attentions -> one
//   ctx.merge_states(m, stream);                // (parallax.h, "Statistics and merging ...")
//
// Context owns a plx_context (move-only). Every failing call throws parallax::Error carrying
// the plx_status and the library's message; nothing else is added to the C API's behaviour.
// Every struct handed to the library starts from its _init (struct_size set: parallax.h,
// "Compatibility"); Make*Args do that for the argument structs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <utility>

#include "parallax/parallax.h"

namespace parallax {

class Error : public std::runtime_error {
 public:
  Error(plx_status status, const std::string& message)
      : std::runtime_error(std::string(plx_status_string(status)) + ": " + message), status_(status) {}
  plx_status status() const noexcept { return status_; }

 private:
  plx_status status_;
};

// Throws Error(status, plx_last_error()) unless status is PLX_OK.
inline void Check(plx_status status) {
  if (status != PLX_OK) throw Error(status, plx_last_error());
}

// A tensor descriptor; empty strides = contiguous row-major.
inline plx_tensor MakeTensor(const void* data, plx_dtype dtype, std::initializer_list<int64_t> shape,
                             std::initializer_list<int64_t> strides = {}) {
  if (shape.size() < 1 || shape.size() > PLX_MAX_DIMS)
    throw Error(PLX_ERROR_INVALID_ARGUMENT, "MakeTensor: shape must have 1..4 dimensions");
  if (strides.size() != 0 && strides.size() != shape.size())
    throw Error(PLX_ERROR_INVALID_ARGUMENT, "MakeTensor: strides must be empty or match shape's rank");
  plx_tensor t{};
  t.data = const_cast<void*>(data);
  t.dtype = dtype;
  t.ndim = static_cast<int32_t>(shape.size());
  int i = 0;
  for (int64_t s : shape) t.shape[i++] = s;
  i = 0;
  for (int64_t s : strides) t.strides[i++] = s;
  return t;
}

inline plx_decode_args MakeDecodeArgs() {
  plx_decode_args a;
  plx_decode_args_init(&a);
  return a;
}

inline plx_prefill_args MakePrefillArgs() {
  plx_prefill_args a;
  plx_prefill_args_init(&a);
  return a;
}

inline plx_merge_args MakeMergeArgs() {
  plx_merge_args a;
  plx_merge_args_init(&a);
  return a;
}

struct ContextOptions {
  int device = 0;
  std::string db_path;    // "" = the default location, "none" = none (plx_context_options)
  std::string cache_dir;  // "" = $PARALLAX_CACHE_DIR or ~/.cache/parallax
};

struct PlanInfo {
  std::string variant;
  plx_choice choice = PLX_CHOICE_DEFAULT;
  int num_splits = 1;
  size_t workspace_bytes = 0;
  const char* choice_name() const { return plx_choice_string(choice); }
  static PlanInfo From(const plx_plan_info& i) {
    return PlanInfo{i.variant, i.choice, static_cast<int>(i.num_splits), i.workspace_bytes};
  }
};

class Context {
 public:
  explicit Context(const ContextOptions& options = ContextOptions()) {
    plx_context_options o;
    plx_context_options_init(&o);
    o.device = options.device;
    o.db_path = options.db_path.empty() ? nullptr : options.db_path.c_str();
    o.cache_dir = options.cache_dir.empty() ? nullptr : options.cache_dir.c_str();
    Check(plx_context_create(&o, &ctx_));
  }
  explicit Context(int device) : Context(ContextOptions{device, {}, {}}) {}
  // Takes ownership of an existing handle (may be null).
  static Context Adopt(plx_context* ctx) noexcept { return Context(ctx, AdoptTag{}); }

  ~Context() { plx_context_destroy(ctx_); }
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;
  Context(Context&& o) noexcept : ctx_(std::exchange(o.ctx_, nullptr)) {}
  Context& operator=(Context&& o) noexcept {
    if (this != &o) {
      plx_context_destroy(ctx_);
      ctx_ = std::exchange(o.ctx_, nullptr);
    }
    return *this;
  }

  plx_context* get() const noexcept { return ctx_; }
  plx_context* release() noexcept { return std::exchange(ctx_, nullptr); }
  explicit operator bool() const noexcept { return ctx_ != nullptr; }

  plx_device_info device_info() const {
    plx_device_info info;
    plx_device_info_init(&info);
    Check(plx_context_get_device_info(ctx_, &info));
    return info;
  }

  // stream: a CUstream / cudaStream_t (nullptr = legacy default stream).
  void decode(const plx_decode_args& args, void* stream = nullptr) { Check(plx_decode(ctx_, &args, stream)); }
  size_t decode_workspace_size(const plx_decode_args& args) {
    size_t bytes = 0;
    Check(plx_decode_workspace_size(ctx_, &args, &bytes));
    return bytes;
  }
  PlanInfo decode_plan(const plx_decode_args& args) {
    plx_plan_info info;
    plx_plan_info_init(&info);
    Check(plx_decode_plan_info(ctx_, &args, &info));
    return PlanInfo::From(info);
  }

  void prefill(const plx_prefill_args& args, void* stream = nullptr) { Check(plx_prefill(ctx_, &args, stream)); }
  PlanInfo prefill_plan(const plx_prefill_args& args) {
    plx_plan_info info;
    plx_plan_info_init(&info);
    Check(plx_prefill_plan_info(ctx_, &args, &info));
    return PlanInfo::From(info);
  }

  // The exact merge of two partial attentions (parallax.h, "Statistics and merging partial
  // attentions"); the first call per (dtype, head_dim, probe, affine) compiles its kernel.
  void merge_states(const plx_merge_args& args, void* stream = nullptr) {
    Check(plx_merge_states(ctx_, &args, stream));
  }

 private:
  struct AdoptTag {};
  Context(plx_context* ctx, AdoptTag) noexcept : ctx_(ctx) {}
  plx_context* ctx_ = nullptr;
};

namespace detail {
struct DecodePlanApi {
  using Handle = plx_decode_plan;
  using Args = plx_decode_args;
  static plx_status Create(plx_context* c, const Args* a, Handle** p) { return plx_decode_plan_create(c, a, p); }
  static plx_status Run(plx_context* c, const Handle* p, const Args* a, void* s) { return plx_decode_plan_run(c, p, a, s); }
  static plx_status Info(const Handle* p, plx_plan_info* i) { return plx_decode_plan_get_info(p, i); }
  static void Destroy(Handle* p) { plx_decode_plan_destroy(p); }
};
struct PrefillPlanApi {
  using Handle = plx_prefill_plan;
  using Args = plx_prefill_args;
  static plx_status Create(plx_context* c, const Args* a, Handle** p) { return plx_prefill_plan_create(c, a, p); }
  static plx_status Run(plx_context* c, const Handle* p, const Args* a, void* s) { return plx_prefill_plan_run(c, p, a, s); }
  static plx_status Info(const Handle* p, plx_plan_info* i) { return plx_prefill_plan_get_info(p, i); }
  static void Destroy(Handle* p) { plx_prefill_plan_destroy(p); }
};
}  // namespace detail

// A plan (parallax.h, "Plans"), move-only. It keeps the context's handle: the Context must
// outlive the runs (the plan itself may be destroyed after it).
template <typename Api>
class BasicPlan {
 public:
  BasicPlan(const Context& ctx, const typename Api::Args& args) : ctx_(ctx.get()) {
    Check(Api::Create(ctx_, &args, &plan_));
  }
  ~BasicPlan() { Api::Destroy(plan_); }
  BasicPlan(const BasicPlan&) = delete;
  BasicPlan& operator=(const BasicPlan&) = delete;
  BasicPlan(BasicPlan&& o) noexcept : ctx_(o.ctx_), plan_(std::exchange(o.plan_, nullptr)) {}
  BasicPlan& operator=(BasicPlan&& o) noexcept {
    if (this != &o) {
      Api::Destroy(plan_);
      ctx_ = o.ctx_;
      plan_ = std::exchange(o.plan_, nullptr);
    }
    return *this;
  }

  // args: the plan's problem over this call's tensors; stream as for Context::decode.
  void run(const typename Api::Args& args, void* stream = nullptr) const {
    Check(Api::Run(ctx_, plan_, &args, stream));
  }
  PlanInfo info() const {
    plx_plan_info i;
    plx_plan_info_init(&i);
    Check(Api::Info(plan_, &i));
    return PlanInfo::From(i);
  }
  const typename Api::Handle* get() const noexcept { return plan_; }

 private:
  plx_context* ctx_ = nullptr;
  typename Api::Handle* plan_ = nullptr;
};
// (Not DecodePlan: the runtime's C++ API, parallax/runtime/runtime.h, has that name.)
using PlannedDecode = BasicPlan<detail::DecodePlanApi>;
using PlannedPrefill = BasicPlan<detail::PrefillPlanApi>;

// Host-only validation (no context, no device): throws Error on bad arguments.
inline void ValidateDecode(const plx_decode_args& args) { Check(plx_decode_validate(&args)); }
inline void ValidatePrefill(const plx_prefill_args& args) { Check(plx_prefill_validate(&args)); }
inline void ValidateMerge(const plx_merge_args& args) { Check(plx_merge_validate(&args)); }

}  // namespace parallax
