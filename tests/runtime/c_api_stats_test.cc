// CPU tests of prefill's optional lse / tbar outputs in the C API: accepted layouts and the
// parameters they become, every refusal naming its argument, and PLX_FLOAT32 staying out
// of every other tensor. Device pointers are fake (aligned, never dereferenced).
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <string>

#include "c_api_internal.h"
#include "parallax/parallax.h"
#include "parallax/parallax.hpp"

namespace {

void* Fake(uintptr_t i, uintptr_t bytes = 0) { return reinterpret_cast<void*>(0x100000 * i + bytes); }

plx_tensor T(void* data, plx_dtype dt, std::initializer_list<int64_t> shape,
             std::initializer_list<int64_t> strides = {}) {
  return parallax::MakeTensor(data, dt, shape, strides);
}

constexpr int kB = 2, kHq = 8, kHkv = 2, kD = 64, kLq = 40, kTq = 90;

plx_prefill_args Padded() {
  plx_prefill_args a = parallax::MakePrefillArgs();
  a.q = T(Fake(1), PLX_BF16, {kB, kLq, kHq, kD});
  a.r = T(Fake(2), PLX_BF16, {kB, kLq, kHq, kD});
  a.k = T(Fake(3), PLX_BF16, {kB, 50, kHkv, kD});
  a.v = T(Fake(4), PLX_BF16, {kB, 50, kHkv, kD});
  a.out = T(Fake(5), PLX_BF16, {kB, kLq, kHq, kD});
  return a;
}

plx_prefill_args Packed() {
  plx_prefill_args a = parallax::MakePrefillArgs();
  a.q = T(Fake(1), PLX_FP16, {kTq, kHq, kD});
  a.k = T(Fake(3), PLX_FP16, {120, kHkv, kD});
  a.v = T(Fake(4), PLX_FP16, {120, kHkv, kD});
  a.out = T(Fake(5), PLX_FP16, {kTq, kHq, kD});
  a.cu_seqlens_q = T(Fake(6), PLX_INT32, {kB + 1});
  a.cu_seqlens_k = T(Fake(7), PLX_INT32, {kB + 1});
  a.max_seqlen_q = 60;
  a.max_seqlen_k = 70;
  return a;
}

absl::StatusOr<parallax::PrefillCall> Translate(const plx_prefill_args& a) {
  return parallax::capi::TranslatePrefillArgs(a);
}

template <typename Args>
void ExpectError(plx_status (*fn)(const Args*), const Args& a, plx_status want,
                 std::initializer_list<const char*> needles) {
  const plx_status got = fn(&a);
  const std::string msg = plx_last_error();
  EXPECT_EQ(got, want) << plx_status_string(got) << ": " << msg;
  for (const char* n : needles) EXPECT_NE(msg.find(n), std::string::npos) << "'" << n << "' not in: " << msg;
}
void ExpectPrefillError(const plx_prefill_args& a, std::initializer_list<const char*> needles) {
  ExpectError(&plx_prefill_validate, a, PLX_ERROR_INVALID_ARGUMENT, needles);
}

TEST(CApiStats, InitLeavesThemAbsent) {
  plx_prefill_args p;
  std::memset(&p, 0x5a, sizeof(p));
  plx_prefill_args_init(&p);
  EXPECT_EQ(p.lse.data, nullptr);
  EXPECT_EQ(p.tbar.data, nullptr);
  absl::StatusOr<parallax::PrefillCall> c = Translate(Padded());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->params.lse, nullptr);
  EXPECT_EQ(c->params.tbar, nullptr);
}

TEST(CApiStats, PaddedAndPackedLayouts) {
  plx_prefill_args a = Padded();
  a.lse = T(Fake(8), PLX_FLOAT32, {kB, kHq, kLq});
  a.tbar = T(Fake(9), PLX_FLOAT32, {kB, kHq, kLq});
  absl::StatusOr<parallax::PrefillCall> c = Translate(a);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->params.lse, Fake(8));
  EXPECT_EQ(c->params.tbar, Fake(9));
  EXPECT_EQ(c->params.stats_stride_b, kHq * kLq);
  EXPECT_EQ(c->params.stats_stride_h, kLq);

  // Rows padded to 64 in a [Hq, B, 64] buffer: any non-overlapping strides, rows contiguous.
  a.lse = T(Fake(8), PLX_FLOAT32, {kB, kHq, kLq}, {64, kB * 64, 1});
  a.tbar.data = nullptr;  // lse alone
  c = Translate(a);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->params.stats_stride_b, 64);
  EXPECT_EQ(c->params.stats_stride_h, kB * 64);
  EXPECT_EQ(c->params.tbar, nullptr);

  plx_prefill_args p = Packed();  // probe none: tbar is still written (zeros)
  p.tbar = T(Fake(9), PLX_FLOAT32, {kHq, kTq});
  c = Translate(p);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->params.lse, nullptr);
  EXPECT_EQ(c->params.tbar, Fake(9));
  EXPECT_EQ(c->params.stats_stride_b, 0);
  EXPECT_EQ(c->params.stats_stride_h, kTq);
  EXPECT_EQ(c->total_q, kTq);
}

// The C descriptors and the C++ PrefillArgs (zero strides: contiguous) give one parameter block.
TEST(CApiStats, ParamsMatchTheCppFrontEnd) {
  plx_prefill_args a = Packed();
  a.lse = T(Fake(8), PLX_FLOAT32, {kHq, kTq});
  a.tbar = T(Fake(9), PLX_FLOAT32, {kHq, kTq});
  absl::StatusOr<parallax::PrefillCall> c = Translate(a);
  ASSERT_TRUE(c.ok()) << c.status();
  parallax::PrefillArgs p;
  p.dtype = parallax::DType::kFP16;
  p.batch = kB;
  p.num_q_heads = kHq;
  p.num_kv_heads = kHkv;
  p.head_dim = kD;
  p.q = Fake(1);
  p.k = Fake(3);
  p.v = Fake(4);
  p.out = Fake(5);
  p.q_stride_l = p.o_stride_l = kHq * kD;
  p.q_stride_h = p.o_stride_h = kD;
  p.k_stride_l = p.v_stride_l = kHkv * kD;
  p.k_stride_h = p.v_stride_h = kD;
  p.cu_seqlens_q = static_cast<const int*>(Fake(6));
  p.cu_seqlens_k = static_cast<const int*>(Fake(7));
  p.seqlen_q = 60;
  p.seqlen_k = 70;
  p.total_q = kTq;
  p.total_k = 120;
  p.lse = static_cast<float*>(Fake(8));
  p.tbar = static_cast<float*>(Fake(9));
  const parallax::PrefillCall want = parallax::ToPrefillCall(p);
  ASSERT_TRUE(parallax::CheckPrefillCall(want).ok()) << parallax::CheckPrefillCall(want);
  EXPECT_EQ(std::memcmp(&c->params, &want.params, sizeof(PlxPrefillParams)), 0);
}

TEST(CApiStats, RefusalsNameTheArgument) {
  plx_prefill_args a = Padded();
  a.lse = T(Fake(8), PLX_BF16, {kB, kHq, kLq});
  ExpectPrefillError(a, {"plx_prefill_validate: lse: dtype=bf16: must be float32"});
  a = Padded();
  a.tbar = T(Fake(9), PLX_INT32, {kB, kHq, kLq});
  ExpectPrefillError(a, {"tbar: dtype=int32: must be float32"});
  a = Padded();
  a.lse = T(Fake(8), PLX_DTYPE_UNSET, {kB, kHq, kLq});
  ExpectPrefillError(a, {"lse: dtype is unset"});
  a = Padded();
  a.lse = T(Fake(8), PLX_FLOAT32, {kB, kHq, kLq + 1});
  ExpectPrefillError(a, {"lse: shape [2, 8, 41] does not match [B, Hq, Lq] = [2, 8, 40]"});
  a = Padded();
  a.tbar = T(Fake(9), PLX_FLOAT32, {kHq, kLq});
  ExpectPrefillError(a, {"tbar: ndim=2: must be 3 ([B, Hq, Lq])"});
  plx_prefill_args p = Packed();
  p.lse = T(Fake(8), PLX_FLOAT32, {kB, kHq, 45});
  ExpectPrefillError(p, {"lse: ndim=3: must be 2 ([Hq, Tq])"});
  p = Packed();
  p.tbar = T(Fake(9), PLX_FLOAT32, {kHq, kTq - 1});
  ExpectPrefillError(p, {"tbar: shape [8, 89] does not match [Hq, Tq] = [8, 90]"});
  a = Padded();
  a.lse = T(Fake(8), PLX_FLOAT32, {kB, kHq, kLq}, {2 * kHq * kLq, 2 * kLq, 2});
  ExpectPrefillError(a, {"lse: strides[2]=2: rows must be contiguous"});
  a = Padded();
  a.lse = T(Fake(8), PLX_FLOAT32, {kB, kHq, kLq}, {0, kLq, 1});
  ExpectPrefillError(a, {"lse: strides[0]=0 with shape[0]=2", "alias"});
  a = Padded();
  a.tbar = T(Fake(9), PLX_FLOAT32, {kB, kHq, kLq}, {kHq * kLq, kLq / 2, 1});
  ExpectPrefillError(a, {"tbar: strides[", "overlaps dimension", "alias"});
  a = Padded();
  a.lse = T(Fake(8, 2), PLX_FLOAT32, {kB, kHq, kLq});
  ExpectPrefillError(a, {"lse: data=", "must be 4-byte aligned"});
  a = Padded();
  a.lse = T(Fake(8), PLX_FLOAT32, {kB, kHq, kLq});
  a.tbar = T(Fake(9), PLX_FLOAT32, {kB, kHq, kLq}, {kHq * 64, 64, 1});
  ExpectPrefillError(a, {"tbar: strides[0]=512 differ from lse's 320", "one layout"});
  // Strides of dimensions of size 1 do not matter, so they need not agree.
  a = Padded();
  a.q = a.r = a.out = T(Fake(1), PLX_BF16, {1, kLq, kHq, kD});
  a.k = a.v = T(Fake(3), PLX_BF16, {1, 50, kHkv, kD});
  a.lse = T(Fake(8), PLX_FLOAT32, {1, kHq, kLq});
  a.tbar = T(Fake(9), PLX_FLOAT32, {1, kHq, kLq}, {7 * kHq * kLq, kLq, 1});
  EXPECT_EQ(plx_prefill_validate(&a), PLX_OK) << plx_last_error();
}

// PLX_FLOAT32 exists for lse / tbar only: q, r, k, v, out and the index tensors refuse it.
TEST(CApiStats, Float32StaysOutOfEveryOtherTensor) {
  plx_decode_args d = parallax::MakeDecodeArgs();
  d.q = T(Fake(1), PLX_FLOAT32, {kB, kHq, kD});
  d.r = T(Fake(2), PLX_FLOAT32, {kB, kHq, kD});
  d.k = T(Fake(3), PLX_FLOAT32, {kB, 64, kHkv, kD});
  d.v = T(Fake(4), PLX_FLOAT32, {kB, 64, kHkv, kD});
  d.out = T(Fake(5), PLX_FLOAT32, {kB, kHq, kD});
  ExpectError(&plx_decode_validate, d, PLX_ERROR_UNSUPPORTED, {"q: dtype=float32: must be bf16 or fp16"});
  for (plx_tensor* t : {&d.q, &d.r, &d.k, &d.v, &d.out}) t->dtype = PLX_BF16;
  d.k.dtype = PLX_FLOAT32;
  ExpectError(&plx_decode_validate, d, PLX_ERROR_INVALID_ARGUMENT, {"k: dtype=float32 does not match q's bf16"});
  d.k.dtype = PLX_BF16;
  d.out.dtype = PLX_FLOAT32;
  ExpectError(&plx_decode_validate, d, PLX_ERROR_INVALID_ARGUMENT, {"out: dtype=float32"});
  d.out.dtype = PLX_BF16;
  d.cache_seqlens = T(Fake(7), PLX_FLOAT32, {kB});
  ExpectError(&plx_decode_validate, d, PLX_ERROR_INVALID_ARGUMENT, {"cache_seqlens: dtype=float32: must be int32"});
  d.cache_seqlens.dtype = PLX_INT32;
  EXPECT_EQ(plx_decode_validate(&d), PLX_OK) << plx_last_error();

  plx_prefill_args a = Padded();
  a.q.dtype = PLX_FLOAT32;
  ExpectError(&plx_prefill_validate, a, PLX_ERROR_UNSUPPORTED, {"q: dtype=float32: must be bf16 or fp16"});
  a = Padded();
  a.r.dtype = PLX_FLOAT32;
  ExpectPrefillError(a, {"r: dtype=float32 does not match q's bf16"});
  plx_prefill_args p = Packed();
  p.cu_seqlens_k.dtype = PLX_FLOAT32;
  ExpectPrefillError(p, {"cu_seqlens_k: dtype=float32: must be int32"});
}

// ---- vbar and causal (ABI 6) ---------------------------------------------------------------

TEST(CApiStats, VbarAndCausalDefaults) {
  plx_prefill_args p;
  std::memset(&p, 0x5a, sizeof(p));
  plx_prefill_args_init(&p);
  EXPECT_EQ(p.vbar.data, nullptr);
  EXPECT_EQ(p.causal, 1);
  plx_decode_args d;
  std::memset(&d, 0x5a, sizeof(d));
  plx_decode_args_init(&d);
  EXPECT_EQ(d.lse.data, nullptr);
  EXPECT_EQ(d.tbar.data, nullptr);
  EXPECT_EQ(d.vbar.data, nullptr);
  absl::StatusOr<parallax::PrefillCall> c = Translate(Padded());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->params.vbar, nullptr);
  EXPECT_EQ(c->params.causal, 1);
  EXPECT_EQ(c->params.vbar_stride_b, 0);
}

TEST(CApiStats, VbarLayouts) {
  plx_prefill_args a = Padded();
  a.vbar = T(Fake(10), PLX_BF16, {kB, kLq, kHq, kD});
  absl::StatusOr<parallax::PrefillCall> c = Translate(a);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->params.vbar, Fake(10));
  EXPECT_EQ(c->params.vbar_stride_b, kLq * kHq * kD);
  EXPECT_EQ(c->params.vbar_stride_l, kHq * kD);
  EXPECT_EQ(c->params.vbar_stride_h, kD);
  // Its own strides: a [B, Hq, Lq, D] buffer seen as [B, Lq, Hq, D].
  a.vbar = T(Fake(10), PLX_BF16, {kB, kLq, kHq, kD}, {kHq * kLq * kD, kD, kLq * kD, 1});
  c = Translate(a);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->params.vbar_stride_l, kD);
  EXPECT_EQ(c->params.vbar_stride_h, kLq * kD);
  EXPECT_EQ(c->params.o_stride_l, kHq * kD);  // out keeps its own
  plx_prefill_args p = Packed();
  p.vbar = T(Fake(10), PLX_FP16, {kTq, kHq, kD});
  c = Translate(p);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->params.vbar_stride_b, 0);
  EXPECT_EQ(c->params.vbar_stride_l, kHq * kD);
}

TEST(CApiStats, VbarRefusalsNameIt) {
  plx_prefill_args a = Padded();
  a.vbar = T(Fake(10), PLX_FP16, {kB, kLq, kHq, kD});
  ExpectPrefillError(a, {"plx_prefill_validate: vbar: dtype=fp16 does not match out's bf16"});
  a.vbar = T(Fake(10), PLX_FLOAT32, {kB, kLq, kHq, kD});
  ExpectPrefillError(a, {"vbar: dtype=float32 does not match out's bf16"});
  a.vbar = T(Fake(10), PLX_BF16, {kB, kLq + 1, kHq, kD});
  ExpectPrefillError(a, {"vbar: shape [2, 41, 8, 64] does not match out's [2, 40, 8, 64]"});
  a.vbar = T(Fake(10), PLX_BF16, {kB, kLq, kHq, kD}, {kLq * kHq * kD * 2, kHq * kD * 2, kD * 2, 2});
  ExpectPrefillError(a, {"vbar: strides[3]=2", "contiguous"});
  a.vbar = T(Fake(10, 8), PLX_BF16, {kB, kLq, kHq, kD});
  ExpectPrefillError(a, {"vbar: data=", "16-byte aligned"});
  a.vbar = T(Fake(10), PLX_BF16, {kB, kLq, kHq, kD}, {0, kHq * kD, kD, 1});
  ExpectPrefillError(a, {"vbar: strides[0]=0 with shape[0]=2", "alias"});
  a.vbar = a.out;  // on out's own memory
  ExpectPrefillError(a, {"vbar: overlaps out"});
  a.vbar = T(static_cast<char*>(Fake(5)) + 128, PLX_BF16, {kB, kLq, kHq, kD});
  ExpectPrefillError(a, {"vbar: overlaps out"});
}

TEST(CApiStats, NonCausalPrefill) {
  plx_prefill_args a = Padded();
  a.causal = 0;
  absl::StatusOr<parallax::PrefillCall> c = Translate(a);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->params.causal, 0);
  a.window_left = -1;  // FlashAttention's (-1, -1): no window, non-causal
  a.window_right = -1;
  EXPECT_EQ(plx_prefill_validate(&a), PLX_OK) << plx_last_error();
  a = Padded();
  a.causal = 2;
  ExpectPrefillError(a, {"causal=2: must be 1 (causal) or 0 (non-causal)"});
  a.causal = -1;
  ExpectPrefillError(a, {"causal=-1"});
  a = Padded();
  a.causal = 0;
  a.window = 16;
  ExpectPrefillError(a, {"causal=0: a non-causal prefill sees every key", "window"});
  a.window = 0;
  a.window_left = 15;
  a.window_right = 0;
  ExpectPrefillError(a, {"causal=0", "window"});
  a.window_left = -1;
  ExpectPrefillError(a, {"window_right=0", "causal=0", "(-1, -1)"});
  // Non-causal over pages and over packed sequences.
  plx_prefill_args p = Packed();
  p.causal = 0;
  EXPECT_EQ(plx_prefill_validate(&p), PLX_OK) << plx_last_error();
  p = Packed();
  p.k = T(Fake(3), PLX_FP16, {16, 16, kHkv, kD});
  p.v = T(Fake(4), PLX_FP16, {16, 16, kHkv, kD});
  p.cu_seqlens_k = T(nullptr, PLX_INT32, {3});
  p.max_seqlen_k = -1;
  p.block_table = T(Fake(11), PLX_INT32, {kB, 4});
  p.seqused_k = T(Fake(12), PLX_INT32, {kB});
  p.causal = 0;
  c = Translate(p);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->params.causal, 0);
  // The C++ front end refuses the same.
  parallax::PrefillCall cpp = *c;
  cpp.params.window = 8;
  cpp.problem.window = true;
  const absl::Status s = parallax::CheckPrefillCall(cpp);
  EXPECT_NE(s.message().find("causal=0"), absl::string_view::npos) << s;
  cpp.params.window = 0;
  cpp.params.causal = 3;
  EXPECT_NE(parallax::CheckPrefillCall(cpp).message().find("causal=3"), absl::string_view::npos);
}

// vbar and causal=0 through the C descriptors and the C++ PrefillArgs give one parameter block.
TEST(CApiStats, VbarAndCausalMatchTheCppFrontEnd) {
  plx_prefill_args a = Padded();
  a.vbar = T(Fake(10), PLX_BF16, {kB, kLq, kHq, kD});
  a.causal = 0;
  absl::StatusOr<parallax::PrefillCall> c = Translate(a);
  ASSERT_TRUE(c.ok()) << c.status();
  parallax::PrefillArgs p;
  p.batch = kB;
  p.num_q_heads = kHq;
  p.num_kv_heads = kHkv;
  p.head_dim = kD;
  p.q = Fake(1);
  p.r = Fake(2);
  p.k = Fake(3);
  p.v = Fake(4);
  p.out = Fake(5);
  p.q_stride_b = p.r_stride_b = p.o_stride_b = kLq * kHq * kD;
  p.q_stride_l = p.r_stride_l = p.o_stride_l = kHq * kD;
  p.q_stride_h = p.r_stride_h = p.o_stride_h = kD;
  p.k_stride_b = p.v_stride_b = 50 * kHkv * kD;
  p.k_stride_l = p.v_stride_l = kHkv * kD;
  p.k_stride_h = p.v_stride_h = kD;
  p.seqlen_q = kLq;
  p.seqlen_k = 50;
  p.vbar = Fake(10);  // strides 0: out's
  p.causal = false;
  const parallax::PrefillCall want = parallax::ToPrefillCall(p);
  ASSERT_TRUE(parallax::CheckPrefillCall(want).ok()) << parallax::CheckPrefillCall(want);
  EXPECT_EQ(std::memcmp(&c->params, &want.params, sizeof(PlxPrefillParams)), 0);
  EXPECT_EQ(sizeof(PlxPrefillParams) % 8, 0u);  // naturally aligned, no tail padding
}

// A plan's runs repeat its statistics and mask: each difference named.
TEST(CApiStats, PlansCoverVbarCausalAndDecodeStats) {
  plx_prefill_args plan = Padded();
  plx_prefill_args run = plan;
  run.vbar = T(Fake(10), PLX_BF16, {kB, kLq, kHq, kD});
  absl::Status s = parallax::capi::CheckRunMatchesPlan(plan, run);
  EXPECT_NE(s.message().find("vbar: given, but the plan was made without it"), absl::string_view::npos) << s;
  s = parallax::capi::CheckRunMatchesPlan(run, plan);
  EXPECT_NE(s.message().find("vbar: absent, but the plan was made with it"), absl::string_view::npos) << s;
  run = plan;
  run.causal = 0;
  s = parallax::capi::CheckRunMatchesPlan(plan, run);
  EXPECT_NE(s.message().find("causal=0 differs from the plan's 1"), absl::string_view::npos) << s;
  run = plan;
  run.vbar = T(Fake(10), PLX_BF16, {kB, kLq, kHq, kD});
  plx_prefill_args with = run;
  with.vbar.data = Fake(13);  // another buffer, same shape: fine
  EXPECT_TRUE(parallax::capi::CheckRunMatchesPlan(run, with).ok());

  plx_decode_args d = parallax::MakeDecodeArgs();
  d.q = d.r = d.out = T(Fake(1), PLX_BF16, {kB, kHq, kD});
  d.k = d.v = T(Fake(3), PLX_BF16, {kB, 64, kHkv, kD});
  plx_decode_args dr = d;
  dr.lse = T(Fake(8), PLX_FLOAT32, {kB, kHq});
  s = parallax::capi::CheckRunMatchesPlan(d, dr);
  EXPECT_NE(s.message().find("lse: given, but the plan was made without it"), absl::string_view::npos) << s;
  plx_decode_args dp = dr;
  dr.lse = T(Fake(8), PLX_FLOAT32, {kB, kHq, 1});
  s = parallax::capi::CheckRunMatchesPlan(dp, dr);
  EXPECT_NE(s.message().find("lse: shape [2, 8, 1] differs from the plan's [2, 8]"), absl::string_view::npos) << s;
  dr = dp;
  dr.tbar = T(Fake(9), PLX_FLOAT32, {kB, kHq});
  s = parallax::capi::CheckRunMatchesPlan(dp, dr);
  EXPECT_NE(s.message().find("tbar: given"), absl::string_view::npos) << s;
  dr = dp;
  dr.vbar = T(Fake(10), PLX_BF16, {kB, kHq, kD});
  s = parallax::capi::CheckRunMatchesPlan(dp, dr);
  EXPECT_NE(s.message().find("vbar: given"), absl::string_view::npos) << s;
}

}  // namespace
