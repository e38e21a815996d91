// The sm_90a primitives (codegen/kernels/sm90/) and the probe kernel compile with NVRTC for
// sm_90a with no toolkit headers, no spills and no messages: ptxas checks the wgmma, TMA and
// mbarrier PTX here, on CPU-only machines. Needs libnvrtc, no GPU.
#include "gtest/gtest.h"
#include "parallax/runtime/nvrtc_compiler.h"
#include "sm90_probe_source.h"

namespace parallax {
namespace {

TEST(Sm90Primitives, ProbeCompilesForSm90a) {
  absl::StatusOr<std::string> src = testing::Sm90ProbeSource();
  ASSERT_TRUE(src.ok()) << src.status();
  CompileOptions o;
  o.arch = "sm_90a";
  absl::StatusOr<CompileResult> r = CompileCuda(*src, "sm90_probe.cu", o);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->kernels.size(), 2u) << r->log;
  EXPECT_FALSE(r->has_spills()) << r->log;
  o.warnings_as_errors = true;
  absl::StatusOr<std::string> ptx = CompileToPtx(*src, "sm90_probe.cu", o);
  ASSERT_TRUE(ptx.ok()) << ptx.status();
  EXPECT_NE(ptx->find("wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16"), std::string::npos);
  EXPECT_NE(ptx->find("cp.async.bulk.tensor.2d"), std::string::npos);
}

TEST(Sm90Primitives, PlainSm90RefusesWgmma) {
  // wgmma needs the arch-specific target: a build for sm_90 must fail, not silently differ.
  absl::StatusOr<std::string> src = testing::Sm90ProbeSource();
  ASSERT_TRUE(src.ok()) << src.status();
  CompileOptions o;
  o.arch = "sm_90";
  EXPECT_FALSE(CompileCuda(*src, "sm90_probe.cu", o).ok());
}

}  // namespace
}  // namespace parallax
