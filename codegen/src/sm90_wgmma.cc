#include "sm90_wgmma.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace parallax::sm90 {
namespace {

// "{%0, %1, ...}" over the accumulators and their "+f" constraints.
struct Accumulators {
  std::string list, constraints;
};
Accumulators AccumulatorOperands(int regs) {
  Accumulators a;
  for (int i = 0; i < regs; ++i) {
    absl::StrAppend(&a.list, i ? ", " : "", "%", i);
    absl::StrAppend(&a.constraints, i ? ", " : "", "\"+f\"(d[", i, "])");
  }
  return a;
}

}  // namespace

std::string WgmmaSs(int n, absl::string_view name) {
  const int regs = n / 2;
  const Accumulators acc = AccumulatorOperands(regs);
  return absl::StrFormat(
      "__device__ __forceinline__ void %s(float (&d)[%d], plx_u64 desc_a, plx_u64 desc_b, int scale_d) {\n"
      "  asm volatile(\n"
      "      \"{\\n .reg .pred p;\\n setp.ne.b32 p, %%%d, 0;\\n\"\n"
      "      \" wgmma.mma_async.sync.aligned.m64n%dk16.f32.\" PLX_E16 \".\" PLX_E16 \" \"\n"
      "      \"{%s}, %%%d, %%%d, p, 1, 1, 0, 0;\\n}\\n\"\n"
      "      : %s\n"
      "      : \"l\"(desc_a), \"l\"(desc_b), \"r\"(scale_d));\n"
      "}\n",
      name, regs, regs + 2, n, acc.list, regs, regs + 1, acc.constraints);
}

std::string WgmmaRsMn(int n, absl::string_view name) {
  const int regs = n / 2;
  const Accumulators acc = AccumulatorOperands(regs);
  return absl::StrFormat(
      "__device__ __forceinline__ void %s(float (&d)[%d], const plx_u32 (&a)[4], plx_u64 desc_b) {\n"
      "  asm volatile(\n"
      "      \"{\\n .reg .pred p;\\n setp.ne.b32 p, %%%d, 0;\\n\"  // scale-d (a predicate) = 1: accumulate\n"
      "      \" wgmma.mma_async.sync.aligned.m64n%dk16.f32.\" PLX_E16 \".\" PLX_E16 \" \"\n"
      "      \"{%s}, {%%%d, %%%d, %%%d, %%%d}, %%%d, p, 1, 1, 1;\\n}\\n\"\n"
      "      : %s\n"
      "      : \"r\"(a[0]), \"r\"(a[1]), \"r\"(a[2]), \"r\"(a[3]), \"l\"(desc_b), \"r\"(1));\n"
      "}\n",
      name, regs, regs + 5, n, acc.list, regs, regs + 1, regs + 2, regs + 3, regs + 4, acc.constraints);
}

std::string WgmmaSsMajor(int n, absl::string_view name, bool a_mn, bool b_mn) {
  const int regs = n / 2;
  const Accumulators acc = AccumulatorOperands(regs);
  return absl::StrFormat(
      "__device__ __forceinline__ void %s(float (&d)[%d], plx_u64 desc_a, plx_u64 desc_b, int scale_d) {\n"
      "  asm volatile(\n"
      "      \"{\\n .reg .pred p;\\n setp.ne.b32 p, %%%d, 0;\\n\"\n"
      "      \" wgmma.mma_async.sync.aligned.m64n%dk16.f32.\" PLX_E16 \".\" PLX_E16 \" \"\n"
      "      \"{%s}, %%%d, %%%d, p, 1, 1, %d, %d;\\n}\\n\"  // tnspA, tnspB: 1 = MN-major\n"
      "      : %s\n"
      "      : \"l\"(desc_a), \"l\"(desc_b), \"r\"(scale_d));\n"
      "}\n",
      name, regs, regs + 2, n, acc.list, regs, regs + 1, a_mn ? 1 : 0, b_mn ? 1 : 0, acc.constraints);
}

}  // namespace parallax::sm90
