#include "parallax/runtime/cuda_driver.h"

#include <dlfcn.h>

#include <mutex>

#include "absl/strings/str_cat.h"

namespace parallax::cu {
namespace {

absl::StatusOr<const Api*> Load() {
  void* lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr)
    return absl::UnavailableError(absl::StrCat("no CUDA driver (libcuda.so.1): ", dlerror()));
  static Api api;
#define PLX_CU_FN(name)                                                                  \
  api.name = reinterpret_cast<decltype(&::name)>(dlsym(lib, #name));                    \
  if (api.name == nullptr)                                                               \
    return absl::UnavailableError(absl::StrCat("CUDA driver lacks ", #name, "; driver too old?"));
#define PLX_CU_OPTIONAL_FN(name) \
  api.name = reinterpret_cast<decltype(&::name)>(dlsym(lib, #name));
#include "parallax/runtime/cuda_driver_fns.inc"
#undef PLX_CU_OPTIONAL_FN
#undef PLX_CU_FN
  if (CUresult r = api.cuInit(0); r != CUDA_SUCCESS) {
    const char* name = "?";
    api.cuGetErrorName(r, &name);
    return absl::UnavailableError(absl::StrCat("cuInit failed: ", name));
  }
  int count = 0;
  if (api.cuDeviceGetCount(&count) != CUDA_SUCCESS || count == 0)
    return absl::UnavailableError("no CUDA device visible");
  return &api;
}

}  // namespace

absl::StatusOr<const Api*> Driver() {
  static const absl::StatusOr<const Api*>* loaded = new absl::StatusOr<const Api*>(Load());
  return *loaded;
}

absl::Status Check(CUresult r, const char* what) {
  if (r == CUDA_SUCCESS) return absl::OkStatus();
  const char* name = "CUDA_ERROR_UNKNOWN";
  const char* text = "";
  if (auto d = Driver(); d.ok()) {
    (*d)->cuGetErrorName(r, &name);
    (*d)->cuGetErrorString(r, &text);
  }
  return absl::InternalError(absl::StrCat(what, ": ", name, " (", text, ")"));
}

}  // namespace parallax::cu
