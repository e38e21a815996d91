// The CUDA driver API, loaded at run time with dlopen so that the runtime library (and every
// CPU-only tool and test linking it) starts on machines without a GPU or driver. One table,
// shared by the runtime and by what drives the GPU beside it in-process (the tuner's worker
// and benches in search/, bench/, the GPU tests): a second dlopen'ed copy would be a second
// set of entry points to keep in step. The functions it holds are cuda_driver_fns.inc's.
#pragma once

#include <cuda.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace parallax::cu {

struct Api {
#define PLX_CU_FN(name) decltype(&::name) name = nullptr;
#define PLX_CU_OPTIONAL_FN(name) decltype(&::name) name = nullptr;  // null: driver lacks it
#include "parallax/runtime/cuda_driver_fns.inc"
#undef PLX_CU_OPTIONAL_FN
#undef PLX_CU_FN
};

// The loaded driver, or an Unavailable status saying why (no libcuda, no device, cuInit failed).
absl::StatusOr<const Api*> Driver();

// CUresult -> Status with the driver's name and text for the error and the failing call.
absl::Status Check(CUresult r, const char* what);

}  // namespace parallax::cu

#define PLX_CU_RETURN_IF_ERROR(api, call)                                 \
  do {                                                                    \
    if (CUresult plx_r_ = (api)->call; plx_r_ != CUDA_SUCCESS)            \
      return ::parallax::cu::Check(plx_r_, #call);                        \
  } while (0)
