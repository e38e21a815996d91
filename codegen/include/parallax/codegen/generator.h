// CUDA C++ generator: one readable, self-contained source per Variant.
//
// The source compiles with NVRTC and no include path: it carries the launch ABI struct from
// kernel_abi.h, a small prelude (16-bit conversions, cp.async, ldmatrix and mma.sync through
// inline PTX), the constexpr tile parameters of the variant and its family's kernels, all
// from real .cuh files under codegen/kernels/ and codegen/families/ embedded at build time.
// Kernel names are fixed per family (see KernelNames), so the module is named by the key.
#pragma once

#include <string>

#include "parallax/codegen/kernel_family.h"
#include "parallax/codegen/variant.h"

namespace parallax {

struct KernelNames {
  static constexpr const char* kDecode = "plx_decode";
  static constexpr const char* kDecodeMerge = "plx_decode_merge";
  static constexpr const char* kPrefill = "plx_prefill";
};

// Launch geometry the runtime must use with the generated kernels (the family's).
LaunchShape GetLaunchShape(const Variant& v);

// The complete CUDA C++ translation unit for v.
std::string GenerateSource(const Variant& v);

}  // namespace parallax
