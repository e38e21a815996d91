// Generated wgmma wrappers for any N: the inline PTX of wgmma.mma_async.m64nNk16 lists N / 2
// accumulator registers, so the generator writes one wrapper per N a variant needs instead
// of a hand-kept table (codegen/kernels/sm90/wgmma.cuh keeps the fixed n64 forms the probes use).
#pragma once

#include <string>

#include "absl/strings/string_view.h"

namespace parallax::sm90 {

// __device__ void name(float (&d)[N / 2], plx_u64 desc_a, plx_u64 desc_b, int scale_d):
// D[64 x N] (+)= A B^T, both operands K-major in shared memory.
std::string WgmmaSs(int n, absl::string_view name);
// __device__ void name(float (&d)[N / 2], const plx_u32 (&a)[4], plx_u64 desc_b):
// D[64 x N] += A B, A in registers (mma.sync A layout per warp), B MN-major in shared memory.
std::string WgmmaRsMn(int n, absl::string_view name);
// Like WgmmaSs, with each operand's major-ness an immediate: a_mn / b_mn read that operand
// MN-major (the transpose flags tnspA / tnspB; 16-bit types only), e.g. K^T as the A operand
// of the backward's dQ^T = K^T dS^T straight from the [key][D] tile the scores read K-major.
std::string WgmmaSsMajor(int n, absl::string_view name, bool a_mn, bool b_mn);

}  // namespace parallax::sm90
