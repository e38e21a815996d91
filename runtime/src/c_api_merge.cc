// The C API's merge of partial attentions (parallax.h, "Statistics and merging partial
// attentions"): plx_merge_args_init, plx_merge_validate, plx_merge_states.
#include <cstring>

#include "c_api_abi.h"
#include "c_api_entry.h"
#include "c_api_internal.h"
#include "parallax/parallax.h"

namespace {

using parallax::capi::Fail;
using parallax::capi::Guard;
using parallax::capi::ReadStruct;

}  // namespace

extern "C" {

PLX_API void plx_merge_args_init(plx_merge_args* args) {
  if (args == nullptr) return;
  std::memset(args, 0, sizeof(*args));  // every tensor absent (data NULL)
  args->struct_size = sizeof(*args);
  args->probe = PLX_PROBE_LEARNED;
  args->affine = PLX_AFFINE_PLAIN;
  args->eps = 1e-6f;
  args->packed = 0;
}

PLX_API plx_status plx_merge_validate(const plx_merge_args* args) {
  static constexpr const char* fn = "plx_merge_validate";
  return Guard(fn, [&]() -> plx_status {
    plx_merge_args local;
    if (absl::Status s = ReadStruct(args, local); !s.ok()) return Fail(fn, s);
    if (args == nullptr) return Fail(PLX_ERROR_INVALID_ARGUMENT, fn, "args is NULL");
    absl::StatusOr<parallax::capi::MergeCall> c = parallax::capi::TranslateMergeArgs(*args);
    return c.ok() ? PLX_OK : Fail(fn, c.status());
  });
}

PLX_API plx_status plx_merge_states(plx_context* ctx, const plx_merge_args* args, void* stream) {
  static constexpr const char* fn = "plx_merge_states";
  return Guard(fn, [&]() -> plx_status {
    plx_merge_args local;
    if (absl::Status s = ReadStruct(args, local); !s.ok()) return Fail(fn, s);
    if (args == nullptr) return Fail(PLX_ERROR_INVALID_ARGUMENT, fn, "args is NULL");
    absl::StatusOr<parallax::capi::MergeCall> c = parallax::capi::TranslateMergeArgs(*args);
    if (!c.ok()) return Fail(fn, c.status());
    if (ctx == nullptr || !ctx->runtime) return Fail(PLX_ERROR_INVALID_ARGUMENT, fn, "ctx is NULL");
    absl::Status s = ctx->runtime->RunMerge(c->kernel, c->params, static_cast<CUstream>(stream));
    return s.ok() ? PLX_OK : Fail(fn, s);
  });
}

}  // extern "C"
