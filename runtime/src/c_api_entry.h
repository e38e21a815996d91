// What the C API's entry points share (c_api.cc: one-shot calls; c_api_plan.cc: plan
// objects): the context handle, the thread-local error, the exception guard, plan reports and
// the front half of every call (null checks, translation, plan). Linked into libparallax.so
// only, so there is one thread-local error.
#pragma once

#include <cstddef>
#include <exception>
#include <memory>
#include <new>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "c_api_internal.h"
#include "parallax/parallax.h"
#include "parallax/runtime/runtime.h"

struct plx_context {
  std::unique_ptr<parallax::Runtime> runtime;
};

namespace parallax::capi {

// Records "fn: msg" as this thread's last error and returns code.
plx_status Fail(plx_status code, const char* fn, absl::string_view msg) noexcept;
plx_status Fail(const char* fn, const absl::Status& s) noexcept;
const char* LastError() noexcept;  // what plx_last_error returns

// Runs body, turning any escaping exception into a status.
template <typename F>
plx_status Guard(const char* fn, F&& body) noexcept {
  try {
    return body();
  } catch (const std::bad_alloc&) {
    return Fail(PLX_ERROR_OUT_OF_MEMORY, fn, "host memory exhausted");
  } catch (const std::exception& e) {
    return Fail(PLX_ERROR_INTERNAL, fn, absl::StrCat("unexpected exception: ", e.what()));
  } catch (...) {
    return Fail(PLX_ERROR_INTERNAL, fn, "unexpected non-standard exception");
  }
}

// Writes a plan report into *info, up to its struct_size (which the call checked first).
plx_status FillPlanInfo(const char* fn, const std::string& key, Choice choice, int num_splits,
                        size_t workspace_bytes, plx_plan_info* info);

// The compute capability of ctx's device (sm_90: 90), as DecodeAsExtend takes it; 0 without one.
inline int ContextSm(const plx_context* ctx) {
  if (ctx == nullptr || !ctx->runtime) return 0;
  return ctx->runtime->device().cc_major * 10 + ctx->runtime->device().cc_minor;
}

// Shared front half of the decode entry points: null checks, translation, plan.
plx_status PlanDecode(const char* fn, plx_context* ctx, const plx_decode_args* args, DecodeCall* call,
                      std::optional<DecodePlan>* plan);
plx_status PlanPrefill(const char* fn, plx_context* ctx, const plx_prefill_args* args, PrefillCall* call,
                       std::unique_ptr<Variant>* v, Choice* choice);

}  // namespace parallax::capi
