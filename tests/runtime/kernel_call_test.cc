// The runtime's checks of a call and the C++ front end's conversion (kernel_call.h): the
// messages Runtime::PlanDecode / PlanPrefill return, on the host without a GPU.
#include "parallax/runtime/kernel_call.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>

namespace parallax {
namespace {

const void* Fake(uintptr_t i) { return reinterpret_cast<const void*>(0x100000 * i); }

// B=2, Hq=8, Hkv=2 and q, r, k, v, out at fake addresses 1..5.
template <typename Args>
Args Valid(int head_dim) {
  Args a;
  a.batch = 2;
  a.num_q_heads = 8;
  a.num_kv_heads = 2;
  a.head_dim = head_dim;
  a.q = Fake(1);
  a.r = Fake(2);
  a.k = Fake(3);
  a.v = Fake(4);
  a.out = const_cast<void*>(Fake(5));
  return a;
}

DecodeArgs ValidDecode() {
  DecodeArgs a = Valid<DecodeArgs>(128);
  a.seqlen = 64;
  return a;
}

PrefillArgs ValidPrefill() {  // fp16, softmax
  PrefillArgs a = Valid<PrefillArgs>(64);
  a.dtype = DType::kFP16;
  a.r = nullptr;
  a.seqlen_q = 40;
  a.seqlen_k = 50;
  return a;
}

std::string DecodeError(const DecodeArgs& a) { return std::string(CheckDecodeCall(ToDecodeCall(a)).message()); }
std::string PrefillError(const PrefillArgs& a) { return std::string(CheckPrefillCall(ToPrefillCall(a)).message()); }

TEST(DecodeCall, ValidArgumentsPass) {
  EXPECT_TRUE(CheckDecodeCall(ToDecodeCall(ValidDecode())).ok());
  DecodeArgs paged = ValidDecode();
  paged.block_table = static_cast<const int*>(Fake(6));
  paged.seqlens = static_cast<const int*>(Fake(7));
  paged.page_size = 16;
  EXPECT_TRUE(CheckDecodeCall(ToDecodeCall(paged)).ok());
}

TEST(DecodeCall, ProblemAndParameters) {
  DecodeArgs a = ValidDecode();
  a.window = 32;
  a.affine = Affine::kAmplified;
  a.qk_scale = 0.5f;
  a.q_stride_b = 1024;
  a.k_stride_1 = 256;
  a.variant_key = "some-key";
  a.num_splits = 3;
  const DecodeCall c = ToDecodeCall(a);
  EXPECT_EQ(c.problem.mode, Mode::kDecode);
  EXPECT_EQ(c.problem.num_q_heads, 8);
  EXPECT_EQ(c.problem.kv_layout, KvLayout::kContiguous);
  EXPECT_TRUE(c.problem.window);
  EXPECT_EQ(c.algorithm.probe, Probe::kLearned);
  EXPECT_EQ(c.algorithm.affine, Affine::kAmplified);
  EXPECT_EQ(c.params.q, Fake(1));
  EXPECT_EQ(c.params.q_stride_b, 1024);
  EXPECT_EQ(c.params.k_stride_1, 256);
  EXPECT_EQ(c.params.batch, 2);
  EXPECT_EQ(c.params.seqlen, 64);
  EXPECT_EQ(c.params.window, 32);
  EXPECT_FLOAT_EQ(c.params.scale_log2, 0.5f * 1.4426950408889634f);
  EXPECT_EQ(c.params.num_splits, 0);  // the plan's
  EXPECT_EQ(c.num_splits, 3);
  EXPECT_EQ(c.variant_key, "some-key");
  a.r = nullptr;
  EXPECT_EQ(ToDecodeCall(a).algorithm.probe, Probe::kNone);
}

TEST(DecodeCall, Messages) {
  DecodeArgs a = ValidDecode();
  a.batch = -1;
  EXPECT_EQ(DecodeError(a), "batch=-1: must be >= 0");
  a = ValidDecode();
  a.num_kv_heads = 3;
  EXPECT_EQ(DecodeError(a), "num_q_heads=8, num_kv_heads=3: need positive counts with Hq a multiple of Hkv");
  a = ValidDecode();
  a.head_dim = 96;
  EXPECT_EQ(DecodeError(a), "head_dim=96: must be 64, 128 or 256");
  a = ValidDecode();
  a.v = nullptr;
  EXPECT_EQ(DecodeError(a), "q, k, v and out must be non-null device pointers");
  a = ValidDecode();
  a.seqlen = -5;
  EXPECT_EQ(DecodeError(a), "seqlen=-5: must be >= 0");
  a = ValidDecode();
  a.window = -2;
  EXPECT_EQ(DecodeError(a), "window=-2: must be >= 0");
  a = ValidDecode();
  a.num_splits = 257;
  EXPECT_EQ(DecodeError(a), "num_splits=257: must be in 0..256 (0 = auto)");
  a.num_splits = -1;
  EXPECT_EQ(DecodeError(a), "num_splits=-1: must be in 0..256 (0 = auto)");
  a = ValidDecode();
  a.block_table = static_cast<const int*>(Fake(6));
  a.page_size = 16;
  EXPECT_EQ(DecodeError(a), "paged KV needs cache_seqlens (seqlens) as well as block_table");
  a = ValidDecode();
  a.page_size = 16;
  EXPECT_EQ(DecodeError(a), "page_size=16: given without a block_table");
}

TEST(PrefillCall, ProblemAndParameters) {
  PrefillArgs a = ValidPrefill();
  a.cu_seqlens_q = static_cast<const int*>(Fake(6));
  a.cu_seqlens_k = static_cast<const int*>(Fake(7));
  a.o_stride_l = 512;
  const PrefillCall c = ToPrefillCall(a);
  EXPECT_TRUE(CheckPrefillCall(c).ok());
  EXPECT_EQ(c.problem.mode, Mode::kPrefill);
  EXPECT_EQ(c.problem.dtype, DType::kFP16);
  EXPECT_EQ(c.problem.kv_layout, KvLayout::kContiguous);
  EXPECT_EQ(c.algorithm.probe, Probe::kNone);
  EXPECT_EQ(c.params.cu_seqlens_k, Fake(7));
  EXPECT_EQ(c.params.o_stride_l, 512);
  EXPECT_EQ(c.params.seqlen_q, 40);
  EXPECT_EQ(c.params.seqlen_k, 50);
  EXPECT_FLOAT_EQ(c.params.scale_log2, 1.4426950408889634f / 8.f);  // 1/sqrt(64)
}

TEST(PrefillCall, Messages) {
  PrefillArgs a = ValidPrefill();
  a.num_q_heads = 0;
  EXPECT_EQ(PrefillError(a), "num_q_heads=0, num_kv_heads=2: need positive counts with Hq a multiple of Hkv");
  a = ValidPrefill();
  a.out = nullptr;
  EXPECT_EQ(PrefillError(a), "q, k, v and out must be non-null device pointers");
  a = ValidPrefill();
  a.seqlen_k = -1;
  EXPECT_EQ(PrefillError(a), "seqlen_q and seqlen_k must be >= 0");
  a = ValidPrefill();
  a.cu_seqlens_q = static_cast<const int*>(Fake(6));
  EXPECT_EQ(PrefillError(a), "cu_seqlens_q and cu_seqlens_k must be given together");
  a = ValidPrefill();
  a.window = -1;
  EXPECT_EQ(PrefillError(a), "window=-1: must be >= 0");
}

float* FakeFloats(uintptr_t i, uintptr_t bytes = 0) { return reinterpret_cast<float*>(0x100000 * i + bytes); }

TEST(PrefillCall, StatsDefaultToContiguousLayouts) {
  PrefillArgs a = ValidPrefill();  // B 2, Hq 8, Lq 40
  a.stats_stride_b = a.stats_stride_h = -3;  // ignored without lse / tbar
  EXPECT_TRUE(CheckPrefillCall(ToPrefillCall(a)).ok());
  a.stats_stride_b = a.stats_stride_h = 0;
  a.lse = FakeFloats(8);
  a.tbar = FakeFloats(9);
  PrefillCall c = ToPrefillCall(a);
  EXPECT_TRUE(CheckPrefillCall(c).ok()) << CheckPrefillCall(c);
  EXPECT_EQ(c.params.lse, FakeFloats(8));
  EXPECT_EQ(c.params.tbar, FakeFloats(9));
  EXPECT_EQ(c.params.stats_stride_h, 40);  // [B, Hq, Lq]
  EXPECT_EQ(c.params.stats_stride_b, 8 * 40);

  a.cu_seqlens_q = static_cast<const int*>(Fake(6));
  a.cu_seqlens_k = static_cast<const int*>(Fake(7));
  a.lse = nullptr;  // tbar alone is fine
  EXPECT_EQ(PrefillError(a), "total_q: packed lse/tbar need the rows of the packed q ([Hq, total_q])");
  a.total_q = 90;
  c = ToPrefillCall(a);
  EXPECT_TRUE(CheckPrefillCall(c).ok()) << CheckPrefillCall(c);
  EXPECT_EQ(c.params.stats_stride_h, 90);  // [Hq, total_q]
  EXPECT_EQ(c.params.stats_stride_b, 0);
}

TEST(PrefillCall, StatsStridesMustNotOverlap) {
  PrefillArgs a = ValidPrefill();
  a.lse = FakeFloats(8);
  a.stats_stride_h = 64;  // rows padded to 64: fine
  a.stats_stride_b = 8 * 64;
  EXPECT_TRUE(CheckPrefillCall(ToPrefillCall(a)).ok());
  a.stats_stride_b = 0;  // [Hq, B, Lq] would need stride_b >= 40 and stride_h >= 80
  EXPECT_NE(PrefillError(a).find("would overlap"), std::string::npos) << PrefillError(a);
  a.stats_stride_b = 40;
  a.stats_stride_h = 80;
  EXPECT_TRUE(CheckPrefillCall(ToPrefillCall(a)).ok());
  a.stats_stride_h = 39;  // heads inside a row
  EXPECT_EQ(PrefillError(a), "stats_stride_b=40, stats_stride_h=39: lse/tbar rows of different heads or batches "
                             "would overlap (rows 40, heads 8, batch 2)");
  a.stats_stride_h = -1;
  EXPECT_EQ(PrefillError(a), "stats_stride_b=40, stats_stride_h=-1: must be >= 0");
  a = ValidPrefill();
  a.tbar = FakeFloats(9, 2);
  EXPECT_EQ(PrefillError(a), "tbar: must be 4-byte aligned (float)");
}

}  // namespace
}  // namespace parallax
