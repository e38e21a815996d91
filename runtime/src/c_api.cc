// The C API (parallax/parallax.h) over parallax::Runtime. No C++ exception crosses it: every
// entry point catches and reports PLX_ERROR_INTERNAL (PLX_ERROR_OUT_OF_MEMORY for bad_alloc).
#include <cstdio>
#include <cstring>
#include <exception>
#include <memory>
#include <new>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "c_api_abi.h"
#include "c_api_entry.h"
#include "c_api_internal.h"
#include "parallax/parallax.h"
#include "parallax/runtime/runtime.h"

namespace {

using parallax::capi::CheckStructSize;
using parallax::capi::Fail;
using parallax::capi::FillPlanInfo;
using parallax::capi::Guard;
using parallax::capi::PlanDecode;
using parallax::capi::PlanPrefill;
using parallax::capi::ReadStruct;
using parallax::capi::WriteStruct;

plx_tensor AbsentTensor() {
  plx_tensor t;
  std::memset(&t, 0, sizeof(t));
  return t;
}

// Multi-token decode (q [B, Tq, Hq, D], Tq > 1) that ctx's device has no decode kernel for
// runs as extend (c_api_multitoken.cc): its prefill arguments in *ext, or *ext empty when
// decode runs it.
plx_status DecodeExtendArgs(const char* fn, const plx_context* ctx, const plx_decode_args* args,
                            std::optional<plx_prefill_args>* ext) {
  if (args == nullptr) return Fail(PLX_ERROR_INVALID_ARGUMENT, fn, "args is NULL");
  absl::StatusOr<std::optional<plx_prefill_args>> e = parallax::capi::DecodeAsExtend(*args, parallax::capi::ContextSm(ctx));
  if (!e.ok()) return Fail(fn, e.status());
  *ext = *e;
  return PLX_OK;
}

}  // namespace

extern "C" {

PLX_API const char* plx_version(void) {
#define PLX_STR2(x) #x
#define PLX_STR(x) PLX_STR2(x)
  return PLX_STR(PLX_VERSION_MAJOR) "." PLX_STR(PLX_VERSION_MINOR) "." PLX_STR(PLX_VERSION_PATCH);
#undef PLX_STR
#undef PLX_STR2
}

PLX_API const char* plx_status_string(plx_status status) {
  switch (status) {
    case PLX_OK: return "PLX_OK";
    case PLX_ERROR_INVALID_ARGUMENT: return "PLX_ERROR_INVALID_ARGUMENT";
    case PLX_ERROR_UNSUPPORTED: return "PLX_ERROR_UNSUPPORTED";
    case PLX_ERROR_NO_DEVICE: return "PLX_ERROR_NO_DEVICE";
    case PLX_ERROR_COMPILE: return "PLX_ERROR_COMPILE";
    case PLX_ERROR_CUDA: return "PLX_ERROR_CUDA";
    case PLX_ERROR_OUT_OF_MEMORY: return "PLX_ERROR_OUT_OF_MEMORY";
    case PLX_ERROR_INTERNAL: return "PLX_ERROR_INTERNAL";
  }
  return "PLX_ERROR_UNKNOWN_STATUS";
}

PLX_API const char* plx_choice_string(plx_choice choice) {
  switch (choice) {
    case PLX_CHOICE_EXPLICIT: return "explicit";
    case PLX_CHOICE_EXACT: return "exact";
    case PLX_CHOICE_NEAREST: return "nearest";
    case PLX_CHOICE_DEFAULT: return "default";
  }
  return "unknown";
}

PLX_API const char* plx_last_error(void) { return parallax::capi::LastError(); }

PLX_API void plx_context_options_init(plx_context_options* options) {
  if (options == nullptr) return;
  std::memset(options, 0, sizeof(*options));
  options->struct_size = sizeof(*options);
  options->device = 0;
  options->db_path = nullptr;
  options->cache_dir = nullptr;
}

PLX_API plx_status plx_context_create(const plx_context_options* options, plx_context** ctx) {
  static constexpr const char* fn = "plx_context_create";
  return Guard(fn, [&]() -> plx_status {
    if (ctx != nullptr) *ctx = nullptr;
    plx_context_options local;  // NULL: the defaults
    if (absl::Status s = ReadStruct(options, local); !s.ok()) return Fail(fn, s);
    if (ctx == nullptr) return Fail(PLX_ERROR_INVALID_ARGUMENT, fn, "ctx: output pointer is NULL");
    parallax::RuntimeOptions o;
    if (options != nullptr) {
      if (options->device < 0)
        return Fail(PLX_ERROR_INVALID_ARGUMENT, fn,
                    absl::StrCat("options->device=", options->device, ": must be >= 0"));
      o.device = options->device;
      if (options->db_path) o.db_path = options->db_path;
      if (options->cache_dir) o.cache_dir = options->cache_dir;
    }
    o.db_path = parallax::ResolveDbPath(o.db_path);  // NULL/"": $PARALLAX_DB, else the XDG default
    absl::StatusOr<std::unique_ptr<parallax::Runtime>> rt = parallax::Runtime::Create(o);
    if (!rt.ok()) {
      if (rt.status().code() == absl::StatusCode::kUnavailable)
        return Fail(PLX_ERROR_NO_DEVICE, fn,
                    absl::StrCat("no usable CUDA device ", o.device, ": ", rt.status().message()));
      return Fail(fn, rt.status());
    }
    *ctx = new plx_context{std::move(*rt)};
    return PLX_OK;
  });
}

PLX_API void plx_context_destroy(plx_context* ctx) {
  Guard("plx_context_destroy", [&]() -> plx_status {
    delete ctx;
    return PLX_OK;
  });
}

PLX_API void plx_device_info_init(plx_device_info* info) {
  if (info == nullptr) return;
  std::memset(info, 0, sizeof(*info));
  info->struct_size = sizeof(*info);
}

PLX_API plx_status plx_context_get_device_info(const plx_context* ctx, plx_device_info* info) {
  static constexpr const char* fn = "plx_context_get_device_info";
  return Guard(fn, [&]() -> plx_status {
    if (absl::Status s = CheckStructSize(info); !s.ok()) return Fail(fn, s);
    if (ctx == nullptr || !ctx->runtime) return Fail(PLX_ERROR_INVALID_ARGUMENT, fn, "ctx is NULL");
    if (info == nullptr) return Fail(PLX_ERROR_INVALID_ARGUMENT, fn, "info is NULL");
    const parallax::DeviceInfo& d = ctx->runtime->device();
    plx_device_info out;
    plx_device_info_init(&out);
    out.ordinal = d.ordinal;
    std::snprintf(out.name, sizeof(out.name), "%s", d.name.c_str());
    out.cc_major = d.cc_major;
    out.cc_minor = d.cc_minor;
    out.sm_count = d.sm_count;
    out.mem_bytes = d.mem_bytes;
    WriteStruct(out, info);
    return PLX_OK;
  });
}

PLX_API void plx_plan_info_init(plx_plan_info* info) {
  if (info == nullptr) return;
  std::memset(info, 0, sizeof(*info));
  info->struct_size = sizeof(*info);
}

PLX_API void plx_decode_args_init(plx_decode_args* args) {
  if (args == nullptr) return;
  std::memset(args, 0, sizeof(*args));  // whatever is not set below (padding too) is zero
  args->struct_size = sizeof(*args);
  args->q = args->r = args->k = args->v = args->out = AbsentTensor();
  args->block_table = args->cache_seqlens = AbsentTensor();
  args->qk_scale = -1.f;
  args->window = 0;
  args->affine = PLX_AFFINE_PLAIN;
  args->eps = 1e-6f;
  args->variant = nullptr;
  args->num_splits = 0;
  args->workspace = nullptr;
  args->workspace_bytes = 0;
  args->window_left = args->window_right = PLX_WINDOW_SIZE_UNSET;
  args->max_seqlen_k = -1;
  args->lse = args->tbar = args->vbar = AbsentTensor();
}

PLX_API plx_status plx_decode_validate(const plx_decode_args* args) {
  static constexpr const char* fn = "plx_decode_validate";
  return Guard(fn, [&]() -> plx_status {
    plx_decode_args local;
    if (absl::Status s = ReadStruct(args, local); !s.ok()) return Fail(fn, s);
    // No device: multi-token decode is valid in either form -- as sm_90's decode kernels take
    // it (with a decode key, splits or lengths over a contiguous cache) or as extend.
    if (args != nullptr && parallax::capi::MultiTokenRunsAsDecode(*args, 90) &&
        parallax::capi::TranslateDecodeCall(*args).ok())
      return PLX_OK;
    std::optional<plx_prefill_args> ext;
    if (plx_status s = DecodeExtendArgs(fn, nullptr, args, &ext); s != PLX_OK) return s;
    if (ext) {
      absl::StatusOr<parallax::PrefillCall> t = parallax::capi::TranslatePrefillArgs(*ext);
      return t.ok() ? PLX_OK : Fail(fn, t.status());
    }
    absl::StatusOr<parallax::DecodeCall> t = parallax::capi::TranslateDecodeCall(*args);
    if (!t.ok()) return Fail(fn, t.status());
    return PLX_OK;
  });
}

PLX_API plx_status plx_decode_workspace_size(plx_context* ctx, const plx_decode_args* args, size_t* bytes) {
  static constexpr const char* fn = "plx_decode_workspace_size";
  return Guard(fn, [&]() -> plx_status {
    plx_decode_args local;
    if (absl::Status s = ReadStruct(args, local); !s.ok()) return Fail(fn, s);
    if (bytes == nullptr) return Fail(PLX_ERROR_INVALID_ARGUMENT, fn, "bytes: output pointer is NULL");
    std::optional<plx_prefill_args> ext;
    if (plx_status s = DecodeExtendArgs(fn, ctx, args, &ext); s != PLX_OK) return s;
    if (ext) {  // extend needs no scratch
      parallax::PrefillCall call;
      std::unique_ptr<parallax::Variant> v;
      if (plx_status s = PlanPrefill(fn, ctx, &*ext, &call, &v, nullptr); s != PLX_OK) return s;
      *bytes = 0;
      return PLX_OK;
    }
    parallax::DecodeCall call;
    std::optional<parallax::DecodePlan> plan;
    if (plx_status s = PlanDecode(fn, ctx, args, &call, &plan); s != PLX_OK) return s;
    *bytes = plan->workspace_bytes;
    return PLX_OK;
  });
}

PLX_API plx_status plx_decode_plan_info(plx_context* ctx, const plx_decode_args* args, plx_plan_info* info) {
  static constexpr const char* fn = "plx_decode_plan_info";
  return Guard(fn, [&]() -> plx_status {
    plx_decode_args local;
    if (absl::Status s = ReadStruct(args, local); !s.ok()) return Fail(fn, s);
    if (absl::Status s = CheckStructSize(info); !s.ok()) return Fail(fn, s);
    if (info == nullptr) return Fail(PLX_ERROR_INVALID_ARGUMENT, fn, "info: output pointer is NULL");
    std::optional<plx_prefill_args> ext;
    if (plx_status s = DecodeExtendArgs(fn, ctx, args, &ext); s != PLX_OK) return s;
    if (ext) {
      parallax::PrefillCall call;
      std::unique_ptr<parallax::Variant> v;
      parallax::Choice choice = parallax::Choice::kDefault;
      if (plx_status s = PlanPrefill(fn, ctx, &*ext, &call, &v, &choice); s != PLX_OK) return s;
      return FillPlanInfo(fn, v->Key(), choice, 1, 0, info);
    }
    parallax::DecodeCall call;
    std::optional<parallax::DecodePlan> plan;
    if (plx_status s = PlanDecode(fn, ctx, args, &call, &plan); s != PLX_OK) return s;
    return FillPlanInfo(fn, plan->variant.Key(), plan->choice, plan->num_splits, plan->workspace_bytes, info);
  });
}

PLX_API plx_status plx_decode(plx_context* ctx, const plx_decode_args* args, void* stream) {
  static constexpr const char* fn = "plx_decode";
  return Guard(fn, [&]() -> plx_status {
    plx_decode_args local;
    if (absl::Status s = ReadStruct(args, local); !s.ok()) return Fail(fn, s);
    std::optional<plx_prefill_args> ext;
    if (plx_status s = DecodeExtendArgs(fn, ctx, args, &ext); s != PLX_OK) return s;
    if (ext) {
      parallax::PrefillCall call;
      std::unique_ptr<parallax::Variant> v;
      if (plx_status s = PlanPrefill(fn, ctx, &*ext, &call, &v, nullptr); s != PLX_OK) return s;
      absl::Status s = ctx->runtime->RunPrefill(*v, call, static_cast<CUstream>(stream));
      return s.ok() ? PLX_OK : Fail(fn, s);
    }
    parallax::DecodeCall call;
    std::optional<parallax::DecodePlan> plan;
    if (plx_status s = PlanDecode(fn, ctx, args, &call, &plan); s != PLX_OK) return s;
    // With a one-launch twin, an eager call alone would never load the captured variant: load
    // both, so a call made before capturing a graph still prepares the capture.
    absl::Status s = plan->eager ? ctx->runtime->PrepareDecode(*plan, call) : absl::OkStatus();
    if (s.ok()) s = ctx->runtime->RunDecode(*plan, call, static_cast<CUstream>(stream));
    if (!s.ok()) return Fail(fn, s);
    return PLX_OK;
  });
}

PLX_API void plx_prefill_args_init(plx_prefill_args* args) {
  if (args == nullptr) return;
  std::memset(args, 0, sizeof(*args));  // whatever is not set below (padding too) is zero
  args->struct_size = sizeof(*args);
  args->q = args->r = args->k = args->v = args->out = AbsentTensor();
  args->cu_seqlens_q = args->cu_seqlens_k = AbsentTensor();
  args->max_seqlen_q = -1;
  args->max_seqlen_k = -1;
  args->qk_scale = -1.f;
  args->window = 0;
  args->affine = PLX_AFFINE_PLAIN;
  args->eps = 1e-6f;
  args->variant = nullptr;
  args->lse = args->tbar = AbsentTensor();
  args->window_left = args->window_right = PLX_WINDOW_SIZE_UNSET;
  args->block_table = args->seqused_k = AbsentTensor();
  args->vbar = AbsentTensor();
  args->causal = 1;
}

PLX_API plx_status plx_prefill_validate(const plx_prefill_args* args) {
  static constexpr const char* fn = "plx_prefill_validate";
  return Guard(fn, [&]() -> plx_status {
    plx_prefill_args local;
    if (absl::Status s = ReadStruct(args, local); !s.ok()) return Fail(fn, s);
    if (args == nullptr) return Fail(PLX_ERROR_INVALID_ARGUMENT, fn, "args is NULL");
    absl::StatusOr<parallax::PrefillCall> t = parallax::capi::TranslatePrefillArgs(*args);
    if (!t.ok()) return Fail(fn, t.status());
    return PLX_OK;
  });
}

PLX_API plx_status plx_prefill_plan_info(plx_context* ctx, const plx_prefill_args* args, plx_plan_info* info) {
  static constexpr const char* fn = "plx_prefill_plan_info";
  return Guard(fn, [&]() -> plx_status {
    plx_prefill_args local;
    if (absl::Status s = ReadStruct(args, local); !s.ok()) return Fail(fn, s);
    if (absl::Status s = CheckStructSize(info); !s.ok()) return Fail(fn, s);
    if (info == nullptr) return Fail(PLX_ERROR_INVALID_ARGUMENT, fn, "info: output pointer is NULL");
    parallax::PrefillCall call;
    std::unique_ptr<parallax::Variant> v;
    parallax::Choice choice = parallax::Choice::kDefault;
    if (plx_status s = PlanPrefill(fn, ctx, args, &call, &v, &choice); s != PLX_OK) return s;
    return FillPlanInfo(fn, v->Key(), choice, 1, 0, info);
  });
}

PLX_API plx_status plx_prefill(plx_context* ctx, const plx_prefill_args* args, void* stream) {
  static constexpr const char* fn = "plx_prefill";
  return Guard(fn, [&]() -> plx_status {
    plx_prefill_args local;
    if (absl::Status s = ReadStruct(args, local); !s.ok()) return Fail(fn, s);
    parallax::PrefillCall call;
    std::unique_ptr<parallax::Variant> v;
    parallax::Choice choice = parallax::Choice::kDefault;
    if (plx_status s = PlanPrefill(fn, ctx, args, &call, &v, &choice); s != PLX_OK) return s;
    absl::Status s = ctx->runtime->RunPrefill(*v, call, static_cast<CUstream>(stream));
    if (!s.ok()) return Fail(fn, s);
    return PLX_OK;
  });
}

}  // extern "C"
