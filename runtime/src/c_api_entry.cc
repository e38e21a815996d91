#include "c_api_entry.h"

#include <cstring>
#include <utility>

#include "c_api_abi.h"

namespace parallax::capi {
namespace {

thread_local std::string t_last_error;

plx_choice ToPlxChoice(Choice c) {
  switch (c) {
    case Choice::kExplicit: return PLX_CHOICE_EXPLICIT;
    case Choice::kTunedExact: return PLX_CHOICE_EXACT;
    case Choice::kTunedNearest: return PLX_CHOICE_NEAREST;
    case Choice::kDefault: return PLX_CHOICE_DEFAULT;
  }
  return PLX_CHOICE_DEFAULT;
}

}  // namespace

plx_status Fail(plx_status code, const char* fn, absl::string_view msg) noexcept {
  try {
    t_last_error = absl::StrCat(fn, ": ", msg);
  } catch (...) {
    t_last_error.clear();  // cannot even allocate the message
  }
  return code;
}

plx_status Fail(const char* fn, const absl::Status& s) noexcept { return Fail(ToPlxStatus(s), fn, s.message()); }

const char* LastError() noexcept { return t_last_error.c_str(); }

plx_status FillPlanInfo(const char* fn, const std::string& key, Choice choice, int num_splits,
                        size_t workspace_bytes, plx_plan_info* info) {
  if (key.size() >= sizeof(info->variant))
    return Fail(PLX_ERROR_INTERNAL, fn, absl::StrCat("variant key of ", key.size(), " characters exceeds ",
                                                     "PLX_VARIANT_KEY_MAX: ", key));
  plx_plan_info out;
  plx_plan_info_init(&out);
  std::memcpy(out.variant, key.data(), key.size());
  out.choice = ToPlxChoice(choice);
  out.num_splits = num_splits;
  out.workspace_bytes = workspace_bytes;
  WriteStruct(out, info);  // up to the caller's struct_size
  return PLX_OK;
}

plx_status PlanDecode(const char* fn, plx_context* ctx, const plx_decode_args* args, DecodeCall* call,
                      std::optional<DecodePlan>* plan) {
  if (args == nullptr) return Fail(PLX_ERROR_INVALID_ARGUMENT, fn, "args is NULL");
  absl::StatusOr<DecodeCall> t = TranslateDecodeCall(*args);
  if (!t.ok()) return Fail(fn, t.status());
  if (ctx == nullptr || !ctx->runtime) return Fail(PLX_ERROR_INVALID_ARGUMENT, fn, "ctx is NULL");
  absl::StatusOr<DecodePlan> p = ctx->runtime->PlanDecode(*t);
  if (!p.ok()) return Fail(fn, p.status());
  *call = std::move(*t);
  plan->emplace(std::move(*p));
  return PLX_OK;
}

plx_status PlanPrefill(const char* fn, plx_context* ctx, const plx_prefill_args* args, PrefillCall* call,
                       std::unique_ptr<Variant>* v, Choice* choice) {
  if (args == nullptr) return Fail(PLX_ERROR_INVALID_ARGUMENT, fn, "args is NULL");
  absl::StatusOr<PrefillCall> t = TranslatePrefillArgs(*args);
  if (!t.ok()) return Fail(fn, t.status());
  if (ctx == nullptr || !ctx->runtime) return Fail(PLX_ERROR_INVALID_ARGUMENT, fn, "ctx is NULL");
  absl::StatusOr<Variant> p = ctx->runtime->PlanPrefill(*t, choice);
  if (!p.ok()) return Fail(fn, p.status());
  *call = std::move(*t);
  *v = std::make_unique<Variant>(std::move(*p));
  return PLX_OK;
}

}  // namespace parallax::capi
