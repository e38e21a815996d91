// CUDA C++ generator: one readable, self-contained source per Variant.
//
// The source compiles with NVRTC and no include path: it carries a small prelude (16-bit
// float conversions, cp.async, ldmatrix and mma.sync through inline PTX) and the launch ABI
// struct from kernel_abi.h. Kernel names are fixed per mode (see KernelNames), so the module
// itself is named by the variant key.
#pragma once

#include <string>

#include "parallax/codegen/variant.h"

namespace parallax {

struct KernelNames {
  static constexpr const char* kDecode = "plx_decode";
  static constexpr const char* kDecodeMerge = "plx_decode_merge";
  static constexpr const char* kPrefill = "plx_prefill";
};

// Launch geometry the runtime must use with the generated kernels.
struct LaunchShape {
  int threads = 0;        // per CTA, main kernel
  int smem_bytes = 0;     // dynamic shared memory, main kernel
  int merge_threads = 0;  // decode split merge kernel
};
LaunchShape GetLaunchShape(const Variant& v);

// The complete CUDA C++ translation unit for v.
std::string GenerateSource(const Variant& v);

}  // namespace parallax
