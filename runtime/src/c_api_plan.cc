// The C API's plan objects (parallax.h, "Plans"): a call's kernel choice made once from
// host-side information, then launched over the tensors of many calls (one per layer).
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "c_api_abi.h"
#include "c_api_entry.h"
#include "c_api_internal.h"
#include "parallax/parallax.h"

namespace {

using parallax::capi::CheckStructSize;
using parallax::capi::Fail;
using parallax::capi::FillPlanInfo;
using parallax::capi::Guard;
using parallax::capi::ReadStruct;

// The arguments a plan was made from, for checking its runs against: a copy, with the
// variant key's text owned here (the caller's string need not outlive the call). Pointers in
// it are only ever tested against NULL. Not copyable: args.variant points into `variant`.
template <typename Args>
struct PlannedArgs {
  Args args;
  std::string variant;
  explicit PlannedArgs(const Args& a) : args(a), variant(a.variant ? a.variant : "") {
    args.variant = a.variant ? variant.c_str() : nullptr;
  }
  PlannedArgs(const PlannedArgs&) = delete;
  PlannedArgs& operator=(const PlannedArgs&) = delete;
};

}  // namespace

struct plx_decode_plan {
  plx_decode_plan(plx_context* c, const plx_decode_args& a) : ctx(c), planned(a) {}
  plx_context* ctx;
  PlannedArgs<plx_decode_args> planned;
  std::optional<parallax::DecodePlan> decode;        // one query token per sequence
  std::unique_ptr<parallax::Variant> extend;         // Tq > 1 runs as extend (c_api_multitoken.cc)
  parallax::Choice extend_choice = parallax::Choice::kDefault;
};

struct plx_prefill_plan {
  plx_prefill_plan(plx_context* c, const plx_prefill_args& a) : ctx(c), planned(a) {}
  plx_context* ctx;
  PlannedArgs<plx_prefill_args> planned;
  std::unique_ptr<parallax::Variant> variant;
  parallax::Choice choice = parallax::Choice::kDefault;
};

namespace {

// A prefill plan's kernel chosen and prepared (compiled, its runtime buffers reserved).
plx_status PlanAndPreparePrefill(const char* fn, plx_context* ctx, const plx_prefill_args& a,
                                 std::unique_ptr<parallax::Variant>* v, parallax::Choice* choice) {
  parallax::PrefillCall call;
  if (plx_status s = parallax::capi::PlanPrefill(fn, ctx, &a, &call, v, choice); s != PLX_OK) return s;
  absl::Status s = ctx->runtime->PreparePrefill(**v, call);
  return s.ok() ? PLX_OK : Fail(fn, s);
}

// Everything a run checks before its own arguments are translated: the handles, and that the
// arguments pose the plan's problem (which also means the same multi-token shape).
template <typename Plan, typename Args>
plx_status CheckRun(const char* fn, const plx_context* ctx, const Plan* plan, const Args* args) {
  if (plan == nullptr) return Fail(PLX_ERROR_INVALID_ARGUMENT, fn, "plan is NULL");
  if (args == nullptr) return Fail(PLX_ERROR_INVALID_ARGUMENT, fn, "args is NULL");
  if (absl::Status s = parallax::capi::CheckRunMatchesPlan(plan->planned.args, *args); !s.ok()) return Fail(fn, s);
  if (ctx == nullptr) return Fail(PLX_ERROR_INVALID_ARGUMENT, fn, "ctx is NULL");
  if (ctx != plan->ctx) return Fail(PLX_ERROR_INVALID_ARGUMENT, fn, "ctx: not the context the plan was made with");
  return PLX_OK;
}

plx_status RunPrefill(const char* fn, plx_context* ctx, const parallax::Variant& v, const plx_prefill_args& a,
                      void* stream) {
  absl::StatusOr<parallax::PrefillCall> call = parallax::capi::TranslatePrefillArgs(a);
  if (!call.ok()) return Fail(fn, call.status());
  absl::Status s = ctx->runtime->RunPrefill(v, *call, static_cast<CUstream>(stream));
  return s.ok() ? PLX_OK : Fail(fn, s);
}

template <typename Plan>
plx_status CheckInfo(const char* fn, const Plan* plan, const plx_plan_info* info) {
  if (absl::Status s = CheckStructSize(info); !s.ok()) return Fail(fn, s);
  if (plan == nullptr) return Fail(PLX_ERROR_INVALID_ARGUMENT, fn, "plan is NULL");
  if (info == nullptr) return Fail(PLX_ERROR_INVALID_ARGUMENT, fn, "info: output pointer is NULL");
  return PLX_OK;
}

}  // namespace

extern "C" {

PLX_API plx_status plx_decode_plan_create(plx_context* ctx, const plx_decode_args* args, plx_decode_plan** plan) {
  static constexpr const char* fn = "plx_decode_plan_create";
  return Guard(fn, [&]() -> plx_status {
    if (plan != nullptr) *plan = nullptr;
    plx_decode_args local;
    if (absl::Status s = ReadStruct(args, local); !s.ok()) return Fail(fn, s);
    if (plan == nullptr) return Fail(PLX_ERROR_INVALID_ARGUMENT, fn, "plan: output pointer is NULL");
    if (args == nullptr) return Fail(PLX_ERROR_INVALID_ARGUMENT, fn, "args is NULL");
    auto p = std::make_unique<plx_decode_plan>(ctx, *args);
    absl::StatusOr<std::optional<plx_prefill_args>> ext = parallax::capi::DecodeAsExtend(*args, parallax::capi::ContextSm(ctx));
    if (!ext.ok()) return Fail(fn, ext.status());
    if (*ext) {
      if (plx_status s = PlanAndPreparePrefill(fn, ctx, **ext, &p->extend, &p->extend_choice); s != PLX_OK) return s;
    } else {
      parallax::DecodeCall call;
      if (plx_status s = parallax::capi::PlanDecode(fn, ctx, args, &call, &p->decode); s != PLX_OK) return s;
      if (absl::Status s = ctx->runtime->PrepareDecode(*p->decode, call); !s.ok()) return Fail(fn, s);
    }
    *plan = p.release();
    return PLX_OK;
  });
}

PLX_API plx_status plx_decode_plan_run(plx_context* ctx, const plx_decode_plan* plan, const plx_decode_args* args,
                                       void* stream) {
  static constexpr const char* fn = "plx_decode_plan_run";
  return Guard(fn, [&]() -> plx_status {
    plx_decode_args local;
    if (absl::Status s = ReadStruct(args, local); !s.ok()) return Fail(fn, s);
    if (plx_status s = CheckRun(fn, ctx, plan, args); s != PLX_OK) return s;
    if (plan->extend) {
      absl::StatusOr<std::optional<plx_prefill_args>> ext = parallax::capi::DecodeAsExtend(*args, parallax::capi::ContextSm(ctx));
      if (!ext.ok()) return Fail(fn, ext.status());
      if (!*ext) return Fail(PLX_ERROR_INTERNAL, fn, "a multi-token plan's run translated as one-token decode");
      return RunPrefill(fn, ctx, *plan->extend, **ext, stream);
    }
    absl::StatusOr<parallax::DecodeCall> call = parallax::capi::TranslateDecodeCall(*args);
    if (!call.ok()) return Fail(fn, call.status());
    absl::Status s = ctx->runtime->RunDecode(*plan->decode, *call, static_cast<CUstream>(stream));
    return s.ok() ? PLX_OK : Fail(fn, s);
  });
}

PLX_API plx_status plx_decode_plan_get_info(const plx_decode_plan* plan, plx_plan_info* info) {
  static constexpr const char* fn = "plx_decode_plan_get_info";
  return Guard(fn, [&]() -> plx_status {
    if (plx_status s = CheckInfo(fn, plan, info); s != PLX_OK) return s;
    if (plan->extend) return FillPlanInfo(fn, plan->extend->Key(), plan->extend_choice, 1, 0, info);
    const parallax::DecodePlan& d = *plan->decode;
    return FillPlanInfo(fn, d.variant.Key(), d.choice, d.num_splits, d.workspace_bytes, info);
  });
}

PLX_API void plx_decode_plan_destroy(plx_decode_plan* plan) {
  Guard("plx_decode_plan_destroy", [&]() -> plx_status {
    delete plan;
    return PLX_OK;
  });
}

PLX_API plx_status plx_prefill_plan_create(plx_context* ctx, const plx_prefill_args* args, plx_prefill_plan** plan) {
  static constexpr const char* fn = "plx_prefill_plan_create";
  return Guard(fn, [&]() -> plx_status {
    if (plan != nullptr) *plan = nullptr;
    plx_prefill_args local;
    if (absl::Status s = ReadStruct(args, local); !s.ok()) return Fail(fn, s);
    if (plan == nullptr) return Fail(PLX_ERROR_INVALID_ARGUMENT, fn, "plan: output pointer is NULL");
    if (args == nullptr) return Fail(PLX_ERROR_INVALID_ARGUMENT, fn, "args is NULL");
    auto p = std::make_unique<plx_prefill_plan>(ctx, *args);
    if (plx_status s = PlanAndPreparePrefill(fn, ctx, *args, &p->variant, &p->choice); s != PLX_OK) return s;
    *plan = p.release();
    return PLX_OK;
  });
}

PLX_API plx_status plx_prefill_plan_run(plx_context* ctx, const plx_prefill_plan* plan, const plx_prefill_args* args,
                                        void* stream) {
  static constexpr const char* fn = "plx_prefill_plan_run";
  return Guard(fn, [&]() -> plx_status {
    plx_prefill_args local;
    if (absl::Status s = ReadStruct(args, local); !s.ok()) return Fail(fn, s);
    if (plx_status s = CheckRun(fn, ctx, plan, args); s != PLX_OK) return s;
    return RunPrefill(fn, ctx, *plan->variant, *args, stream);
  });
}

PLX_API plx_status plx_prefill_plan_get_info(const plx_prefill_plan* plan, plx_plan_info* info) {
  static constexpr const char* fn = "plx_prefill_plan_get_info";
  return Guard(fn, [&]() -> plx_status {
    if (plx_status s = CheckInfo(fn, plan, info); s != PLX_OK) return s;
    return FillPlanInfo(fn, plan->variant->Key(), plan->choice, 1, 0, info);
  });
}

PLX_API void plx_prefill_plan_destroy(plx_prefill_plan* plan) {
  Guard("plx_prefill_plan_destroy", [&]() -> plx_status {
    delete plan;
    return PLX_OK;
  });
}

}  // extern "C"
