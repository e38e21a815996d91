// A variant's loaded module and entry points (Runtime::Load), shared by runtime.cc and the
// launchers of families with more kernels (backward.cc).
#pragma once

#include <cuda.h>

#include "parallax/codegen/kernel_family.h"

namespace parallax {

struct LoadedKernel {
  CUmodule module = nullptr;
  CUfunction main = nullptr;
  CUfunction merge = nullptr;  // KernelNames()[1]: decode's merge, the backward's preprocess
  LaunchShape shape;
  int ctas_per_sm = 0;         // occupancy of `main` at shape
};

}  // namespace parallax
