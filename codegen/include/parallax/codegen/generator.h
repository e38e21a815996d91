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
  static constexpr const char* kMergeStates = "plx_merge_states";
};

// Launch geometry the runtime must use with the generated kernels (the family's).
LaunchShape GetLaunchShape(const Variant& v);

// The complete CUDA C++ translation unit for v.
std::string GenerateSource(const Variant& v);

// plx_merge_states's kernel (kernels/common/merge_states.cuh): the exact merge of two partial
// attentions, one source per (dtype, head dim, probe, affine), kernel plx_merge_states over
// PlxMergeParams (kernel_abi.h), kWarps rows per CTA of kWarps x 32 threads, no shared memory.
struct MergeKernel {
  static constexpr int kWarps = 4;
  DType dtype = DType::kBF16;
  int head_dim = 128;     // 64, 128 or 256
  Probe probe = Probe::kLearned;
  Affine affine = Affine::kPlain;  // probe none merges as softmax either way (Key() says plain)
  std::string Key() const;  // "merge-bf16-d128.learned-amplified": names the compiled module
  int threads() const { return kWarps * 32; }
  long long Ctas(long long rows) const { return (rows + kWarps - 1) / kWarps; }
};
std::string GenerateMergeSource(const MergeKernel& m);

}  // namespace parallax
