// CPU tests of plx_merge_states's arguments (parallax.h, "Statistics and merging partial
// attentions"): the layouts it takes and the kernel parameters they become, in-place merges,
// and every refusal naming its argument. Device pointers are fake (aligned, never read).
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <string>

#include "c_api_internal.h"
#include "parallax/codegen/generator.h"
#include "parallax/parallax.h"
#include "parallax/parallax.hpp"

namespace {

void* Fake(uintptr_t i, uintptr_t bytes = 0) { return reinterpret_cast<void*>(0x1000000 * i + bytes); }

plx_tensor T(void* data, plx_dtype dt, std::initializer_list<int64_t> shape,
             std::initializer_list<int64_t> strides = {}) {
  return parallax::MakeTensor(data, dt, shape, strides);
}

constexpr int kB = 2, kL = 5, kH = 8, kD = 128, kT = 90;

// Two parts of a padded prefill ([B, L, H, D], stats [B, H, L]) merged into fresh outputs.
plx_merge_args Padded(plx_dtype dt = PLX_BF16) {
  plx_merge_args a = parallax::MakeMergeArgs();
  a.out_a = T(Fake(1), dt, {kB, kL, kH, kD});
  a.vbar_a = T(Fake(2), dt, {kB, kL, kH, kD});
  a.lse_a = T(Fake(3), PLX_FLOAT32, {kB, kH, kL});
  a.tbar_a = T(Fake(4), PLX_FLOAT32, {kB, kH, kL});
  a.out_b = T(Fake(5), dt, {kB, kL, kH, kD});
  a.vbar_b = T(Fake(6), dt, {kB, kL, kH, kD});
  a.lse_b = T(Fake(7), PLX_FLOAT32, {kB, kH, kL});
  a.tbar_b = T(Fake(8), PLX_FLOAT32, {kB, kH, kL});
  a.out = T(Fake(9), dt, {kB, kL, kH, kD});
  return a;
}

// Packed prefill ([T, H, D], stats [H, T]) when packed, else one-token decode ([B, H, D],
// stats [B, H]); every tensor 3-D / 2-D.
plx_merge_args ThreeD(bool packed) {
  const int64_t n = packed ? kT : kB;
  plx_merge_args a = parallax::MakeMergeArgs();
  a.packed = packed ? 1 : 0;
  auto stats = [&](uintptr_t i) { return packed ? T(Fake(i), PLX_FLOAT32, {kH, n}) : T(Fake(i), PLX_FLOAT32, {n, kH}); };
  a.out_a = T(Fake(1), PLX_FP16, {n, kH, kD});
  a.vbar_a = T(Fake(2), PLX_FP16, {n, kH, kD});
  a.lse_a = stats(3);
  a.tbar_a = stats(4);
  a.out_b = T(Fake(5), PLX_FP16, {n, kH, kD});
  a.vbar_b = T(Fake(6), PLX_FP16, {n, kH, kD});
  a.lse_b = stats(7);
  a.tbar_b = stats(8);
  a.out = T(Fake(9), PLX_FP16, {n, kH, kD});
  return a;
}

absl::StatusOr<parallax::capi::MergeCall> Translate(const plx_merge_args& a) {
  return parallax::capi::TranslateMergeArgs(a);
}

void ExpectError(const plx_merge_args& a, plx_status want, std::initializer_list<const char*> needles) {
  const plx_status got = plx_merge_validate(&a);
  const std::string msg = plx_last_error();
  EXPECT_EQ(got, want) << plx_status_string(got) << ": " << msg;
  for (const char* n : needles) EXPECT_NE(msg.find(n), std::string::npos) << "'" << n << "' not in: " << msg;
}
void ExpectInvalid(const plx_merge_args& a, std::initializer_list<const char*> needles) {
  ExpectError(a, PLX_ERROR_INVALID_ARGUMENT, needles);
}

void ExpectRows(const PlxMergeRows& r, void* data, long long b, long long l, long long h) {
  EXPECT_EQ(r.data, data);
  EXPECT_EQ(r.stride_b, b);
  EXPECT_EQ(r.stride_l, l);
  EXPECT_EQ(r.stride_h, h);
}
void ExpectStats(const PlxMergeStats& s, void* data, long long b, long long l, long long h) {
  EXPECT_EQ(s.data, data);
  EXPECT_EQ(s.stride_b, b);
  EXPECT_EQ(s.stride_l, l);
  EXPECT_EQ(s.stride_h, h);
}

TEST(CApiMerge, InitDefaults) {
  plx_merge_args a;
  std::memset(&a, 0x5a, sizeof(a));
  plx_merge_args_init(&a);
  for (const plx_tensor* t : {&a.out_a, &a.vbar_a, &a.lse_a, &a.tbar_a, &a.out_b, &a.vbar_b, &a.lse_b, &a.tbar_b,
                              &a.out, &a.vbar, &a.lse, &a.tbar, &a.q, &a.r})
    EXPECT_EQ(t->data, nullptr);
  EXPECT_EQ(a.probe, PLX_PROBE_LEARNED);
  EXPECT_EQ(a.affine, PLX_AFFINE_PLAIN);
  EXPECT_FLOAT_EQ(a.eps, 1e-6f);
  EXPECT_EQ(a.packed, 0);
  plx_merge_args_init(nullptr);  // a no-op
}

// Every layout's rows (b, l, h) and the strides that address them.
TEST(CApiMerge, LayoutsBecomeRowStrides) {
  plx_merge_args a = Padded();
  absl::StatusOr<parallax::capi::MergeCall> c = Translate(a);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->params.rows, kB * kL * kH);
  EXPECT_EQ(c->params.seqlen, kL);
  EXPECT_EQ(c->params.heads, kH);
  ExpectRows(c->params.out_a, Fake(1), kL * kH * kD, kH * kD, kD);
  ExpectRows(c->params.out, Fake(9), kL * kH * kD, kH * kD, kD);
  ExpectStats(c->params.lse_a, Fake(3), kH * kL, 1, kL);
  ExpectStats(c->params.tbar_b, Fake(8), kH * kL, 1, kL);
  EXPECT_EQ(c->params.vbar.data, nullptr);  // optional outputs absent
  EXPECT_EQ(c->params.lse.data, nullptr);
  EXPECT_EQ(c->params.q.data, nullptr);  // plain: r.q unused
  EXPECT_EQ(c->kernel.Key(), "merge-bf16-d128.learned-plain");
  EXPECT_EQ(plx_merge_validate(&a), PLX_OK) << plx_last_error();

  // Strided: a [B, H, L, D] buffer seen as [B, L, H, D]; stats padded to 16 per row.
  a.out_b = T(Fake(5), PLX_BF16, {kB, kL, kH, kD}, {kH * kL * kD, kD, kL * kD, 1});
  a.lse_b = T(Fake(7), PLX_FLOAT32, {kB, kH, kL}, {kH * 16, 16, 1});
  c = Translate(a);
  ASSERT_TRUE(c.ok()) << c.status();
  ExpectRows(c->params.out_b, Fake(5), kH * kL * kD, kD, kL * kD);
  ExpectStats(c->params.lse_b, Fake(7), kH * 16, 1, 16);

  c = Translate(ThreeD(/*packed=*/true));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->params.rows, kT * kH);
  EXPECT_EQ(c->params.seqlen, kT);
  ExpectRows(c->params.out_a, Fake(1), 0, kH * kD, kD);
  ExpectStats(c->params.lse_a, Fake(3), 0, 1, kT);
  EXPECT_EQ(c->kernel.dtype, parallax::DType::kFP16);

  c = Translate(ThreeD(/*packed=*/false));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->params.rows, kB * kH);
  EXPECT_EQ(c->params.seqlen, 1);
  ExpectRows(c->params.out_a, Fake(1), kH * kD, 0, kD);
  ExpectStats(c->params.lse_a, Fake(3), kH, 0, 1);

  // One-token decode with a 4-D q: out [B, 1, H, D], stats [B, H] or [B, H, 1].
  for (bool two_d : {true, false}) {
    plx_merge_args d = Padded();
    for (plx_tensor* t : {&d.out_a, &d.vbar_a, &d.out_b, &d.vbar_b, &d.out}) t->shape[1] = 1;
    for (plx_tensor* t : {&d.lse_a, &d.tbar_a, &d.lse_b, &d.tbar_b})
      *t = two_d ? T(t->data, PLX_FLOAT32, {kB, kH}) : T(t->data, PLX_FLOAT32, {kB, kH, 1});
    c = Translate(d);
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_EQ(c->params.rows, kB * kH);
    ExpectStats(c->params.lse_a, Fake(3), kH, two_d ? 0 : 1, 1);
  }
}

TEST(CApiMerge, ProbeNoneNeedsNeitherVbarNorTbar) {
  plx_merge_args a = Padded();
  a.probe = PLX_PROBE_NONE;
  a.affine = PLX_AFFINE_AMPLIFIED;  // softmax merges one way
  a.vbar_a = a.vbar_b = a.tbar_a = a.tbar_b = plx_tensor{};
  absl::StatusOr<parallax::capi::MergeCall> c = Translate(a);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->kernel.Key(), "merge-bf16-d128.none-plain");
  EXPECT_EQ(c->params.vbar_a.data, nullptr);
  // Given anyway, they are checked but not read.
  a = Padded();
  a.probe = PLX_PROBE_NONE;
  c = Translate(a);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->params.vbar_a.data, nullptr);
  EXPECT_EQ(c->params.tbar_b.data, nullptr);
  a.vbar_b.dtype = PLX_FP16;
  ExpectInvalid(a, {"vbar_b: dtype=fp16 does not match out_a's bf16"});
}

TEST(CApiMerge, AmplifiedNeedsQAndR) {
  plx_merge_args a = Padded();
  a.affine = PLX_AFFINE_AMPLIFIED;
  ExpectInvalid(a, {"plx_merge_validate: q: required with amplified affine"});
  a.q = T(Fake(10), PLX_BF16, {kB, kL, kH, kD});
  ExpectInvalid(a, {"r: required with amplified affine"});
  a.r = T(Fake(11), PLX_BF16, {kB, kL, kH, kD});
  absl::StatusOr<parallax::capi::MergeCall> c = Translate(a);
  ASSERT_TRUE(c.ok()) << c.status();
  ExpectRows(c->params.q, Fake(10), kL * kH * kD, kH * kD, kD);
  EXPECT_EQ(c->params.r.data, Fake(11));
  EXPECT_EQ(c->kernel.Key(), "merge-bf16-d128.learned-amplified");
  a.eps = 0.f;
  ExpectInvalid(a, {"eps=0: must be a positive finite number with amplified affine"});
  a.eps = 1e-6f;
  a.r = T(Fake(11), PLX_BF16, {kB, kL, kH, 64});
  ExpectInvalid(a, {"r: shape [2, 5, 8, 64] does not match out_a's [B, L, Hq, D] = [2, 5, 8, 128]"});
}

// Outputs may be the very tensors of part a (or b): in place. Anything else overlapping is refused.
TEST(CApiMerge, InPlaceAndOverlaps) {
  plx_merge_args a = Padded();
  a.out = a.out_a;
  a.vbar = a.vbar_a;
  a.lse = a.lse_a;
  a.tbar = a.tbar_a;
  absl::StatusOr<parallax::capi::MergeCall> c = Translate(a);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->params.out.data, c->params.out_a.data);
  EXPECT_EQ(c->params.lse.data, c->params.lse_a.data);
  a.out = a.out_b;  // in place over b is as good
  EXPECT_EQ(plx_merge_validate(&a), PLX_OK) << plx_last_error();

  a = Padded();  // out over out_a's memory with other strides
  a.out = T(Fake(1), PLX_BF16, {kB, kL, kH, kD}, {kL * kH * kD, kD, kL * kD, 1});
  ExpectInvalid(a, {"out: overlaps out_a without being the same tensor"});
  a = Padded();  // out reaching into vbar_a's memory
  a.out = T(Fake(2, 64), PLX_BF16, {kB, kL, kH, kD});
  ExpectInvalid(a, {"out: overlaps vbar_a"});
  a = Padded();  // two outputs on one buffer
  a.vbar = a.out;
  ExpectInvalid(a, {"out: overlaps vbar", "must not share memory"});
  a = Padded();
  a.lse = T(Fake(12), PLX_FLOAT32, {kB, kH, kL});
  a.tbar = a.lse;
  ExpectInvalid(a, {"lse: overlaps tbar"});
  a = Padded();
  a.lse = T(Fake(12), PLX_FLOAT32, {kB, kH, kL}, {0, kL, 1});
  ExpectInvalid(a, {"lse: strides[0]=0 with shape[0]=2", "alias"});
  // Inputs may share memory: part b's statistics in the same buffer as a's, say.
  a = Padded();
  a.lse_b = a.lse_a;
  EXPECT_EQ(plx_merge_validate(&a), PLX_OK) << plx_last_error();
}

TEST(CApiMerge, RefusalsNameTheArgument) {
  plx_merge_args a = Padded();
  a.probe = static_cast<plx_probe>(7);
  ExpectInvalid(a, {"probe=7: must be PLX_PROBE_NONE or PLX_PROBE_LEARNED"});
  a = Padded();
  a.affine = static_cast<plx_affine>(9);
  ExpectInvalid(a, {"affine=9"});
  a = Padded();
  a.out_a.data = nullptr;
  ExpectInvalid(a, {"out_a: data is NULL"});
  for (auto [field, name] : {std::pair<plx_tensor plx_merge_args::*, const char*>{&plx_merge_args::out_b, "out_b: required"},
                             {&plx_merge_args::lse_a, "lse_a: required"},
                             {&plx_merge_args::lse_b, "lse_b: required"},
                             {&plx_merge_args::out, "out: required"},
                             {&plx_merge_args::vbar_a, "vbar_a: required with probe learned"},
                             {&plx_merge_args::tbar_b, "tbar_b: required with probe learned"}}) {
    a = Padded();
    (a.*field).data = nullptr;
    ExpectInvalid(a, {name});
  }
  a = Padded(PLX_FLOAT32);
  ExpectError(a, PLX_ERROR_UNSUPPORTED, {"out_a: dtype=float32: must be bf16 or fp16"});
  a = Padded();
  a.out_a = T(Fake(1), PLX_BF16, {kB, kL, kH, 96});
  ExpectError(a, PLX_ERROR_UNSUPPORTED, {"out_a: head_dim=96"});
  a = Padded();
  a.out_a = T(Fake(1), PLX_BF16, {kH, kD});
  ExpectInvalid(a, {"out_a: ndim=2: must be 4"});
  a = Padded();
  a.out_b = T(Fake(5), PLX_BF16, {kB, kL + 1, kH, kD});
  ExpectInvalid(a, {"out_b: shape [2, 6, 8, 128] does not match out_a's [B, L, Hq, D] = [2, 5, 8, 128]"});
  a = Padded();
  a.out = T(Fake(9), PLX_FP16, {kB, kL, kH, kD});
  ExpectInvalid(a, {"out: dtype=fp16 does not match out_a's bf16"});
  a = Padded();
  a.vbar_a = T(Fake(2), PLX_BF16, {kB, kL, kH, kD}, {kL * kH * kD * 2, kH * kD * 2, kD * 2, 2});
  ExpectInvalid(a, {"vbar_a: strides[3]=2", "contiguous"});
  a = Padded();
  a.out = T(Fake(9, 8), PLX_BF16, {kB, kL, kH, kD});
  ExpectInvalid(a, {"out: data=", "16-byte aligned"});
  a = Padded();
  a.lse_a = T(Fake(3), PLX_BF16, {kB, kH, kL});
  ExpectInvalid(a, {"lse_a: dtype=bf16: must be float32"});
  a = Padded();
  a.lse_b = T(Fake(7), PLX_FLOAT32, {kB, kL, kH});
  ExpectInvalid(a, {"lse_b: shape [2, 5, 8] does not match the statistics' [B, Hq, L] = [2, 8, 5]"});
  a = Padded();
  a.tbar = T(Fake(12, 2), PLX_FLOAT32, {kB, kH, kL});
  ExpectInvalid(a, {"tbar: data=", "4-byte aligned"});
  a = Padded();
  a.packed = 2;
  ExpectInvalid(a, {"packed=2: must be 0 or 1"});
  a = Padded();
  a.packed = 1;
  ExpectInvalid(a, {"packed=1: out_a is 4-D"});
  // Packed statistics without packed=1 read as decode's, and say so.
  a = ThreeD(/*packed=*/true);
  a.packed = 0;
  ExpectInvalid(a, {"lse_a: shape [8, 90] does not match the statistics' [B, Hq] (decode; packed=1 for [Hq, Tq]) = [90, 8]"});
  a = ThreeD(/*packed=*/false);
  a.packed = 1;
  ExpectInvalid(a, {"lse_a: shape [2, 8] does not match the statistics' [Hq, Tq] (packed=1) = [8, 2]"});
}

TEST(CApiMerge, EntryPointsWithoutADevice) {
  EXPECT_EQ(plx_merge_validate(nullptr), PLX_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(plx_last_error()).find("plx_merge_validate: args is NULL"), std::string::npos);
  EXPECT_EQ(plx_merge_states(nullptr, nullptr, nullptr), PLX_ERROR_INVALID_ARGUMENT);
  plx_merge_args a = Padded();
  EXPECT_EQ(plx_merge_states(nullptr, &a, nullptr), PLX_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(plx_last_error()).find("plx_merge_states: ctx is NULL"), std::string::npos);
  a.lse_a.dtype = PLX_BF16;  // argument errors come first
  EXPECT_EQ(plx_merge_states(nullptr, &a, nullptr), PLX_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(plx_last_error()).find("plx_merge_states: lse_a: dtype=bf16"), std::string::npos);
  try {
    parallax::ValidateMerge(a);
    ADD_FAILURE() << "ValidateMerge did not throw";
  } catch (const parallax::Error& e) {
    EXPECT_EQ(e.status(), PLX_ERROR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(e.what()).find("lse_a: dtype=bf16"), std::string::npos) << e.what();
  }
}

// The merge kernel's source: one per (dtype, head dim, probe, affine), self-contained.
TEST(CApiMerge, KernelSource) {
  parallax::MergeKernel m;
  m.dtype = parallax::DType::kFP16;
  m.head_dim = 64;
  m.probe = parallax::Probe::kLearned;
  m.affine = parallax::Affine::kAmplified;
  EXPECT_EQ(m.Key(), "merge-fp16-d64.learned-amplified");
  const std::string src = parallax::GenerateMergeSource(m);
  for (const char* needle : {"typedef struct PlxMergeParams", "constexpr int kHeadDim = 64;",
                             "constexpr bool kAmplified = true;", "#define PLX_E16_BF16 0",
                             "extern \"C\" __global__ void __launch_bounds__(kMergeWarps * 32) plx_merge_states"})
    EXPECT_NE(src.find(needle), std::string::npos) << needle;
  EXPECT_EQ(src.find("#include"), std::string::npos);
  m.probe = parallax::Probe::kNone;
  EXPECT_EQ(m.Key(), "merge-fp16-d64.none-plain");
  EXPECT_EQ(m.Ctas(9), 3);
}

}  // namespace
