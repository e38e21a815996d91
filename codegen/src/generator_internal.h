// Pieces of generated source shared by the decode and prefill generators.
#pragma once

#include <string>
#include "absl/strings/string_view.h"

#include "parallax/codegen/variant.h"

namespace parallax::gen {

extern const absl::string_view kPreludeCommon;  // PTX wrappers, dtype-independent
std::string Prelude(DType dtype, MathPath path);  // 16-bit conversions (+ ldmatrix, mma)
std::string HeaderComment(const Variant& v);
std::string CommonConstants(const Variant& v); // constexpr tile parameters
extern const absl::string_view kTileLoaders;    // swizzled smem tiles, cp.async K/V loads
extern const absl::string_view kFinalize;       // accumulators -> output row element
extern const absl::string_view kMmaCore;        // warp-level scores / softmax / PV on mma.sync
extern const absl::string_view kFmaCore;        // the same phases on scalar FMAs

std::string DecodeKernels(const Variant& v);
std::string PrefillKernel(const Variant& v);

}  // namespace parallax::gen
