// CPU tests of the C API (parallax/parallax.h) and its C++ wrapper: every validation path
// returns its status with a message naming the argument, argument translation (strides,
// paged layout, packed prefill), thread-local errors, and context creation without a GPU.
// Device pointers are fake (aligned, never dereferenced): validation runs on the host only.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <thread>

#include "c_api_fixtures.h"
#include "c_api_internal.h"
#include "parallax/parallax.h"
#include "parallax/parallax.hpp"

namespace {

using namespace parallax::capi_fixtures;  // NOLINT(build/namespaces): the tests are written in them

// ---- basics ---------------------------------------------------------------------------------

TEST(CApi, VersionAndNames) {
  EXPECT_STREQ(plx_version(), "0.2.0");
  EXPECT_STREQ(plx_status_string(PLX_OK), "PLX_OK");
  EXPECT_STREQ(plx_status_string(PLX_ERROR_NO_DEVICE), "PLX_ERROR_NO_DEVICE");
  EXPECT_STREQ(plx_status_string(static_cast<plx_status>(99)), "PLX_ERROR_UNKNOWN_STATUS");
  EXPECT_STREQ(plx_choice_string(PLX_CHOICE_EXPLICIT), "explicit");
  EXPECT_STREQ(plx_choice_string(PLX_CHOICE_EXACT), "exact");
  EXPECT_STREQ(plx_choice_string(PLX_CHOICE_NEAREST), "nearest");
  EXPECT_STREQ(plx_choice_string(PLX_CHOICE_DEFAULT), "default");
}

TEST(CApi, ArgsInitDefaults) {
  plx_decode_args d;
  std::memset(&d, 0x5a, sizeof(d));
  plx_decode_args_init(&d);
  EXPECT_EQ(d.q.data, nullptr);
  EXPECT_EQ(d.block_table.data, nullptr);
  EXPECT_EQ(d.qk_scale, -1.f);
  EXPECT_EQ(d.window, 0);
  EXPECT_EQ(d.affine, PLX_AFFINE_PLAIN);
  EXPECT_FLOAT_EQ(d.eps, 1e-6f);
  EXPECT_EQ(d.variant, nullptr);
  EXPECT_EQ(d.num_splits, 0);
  EXPECT_EQ(d.workspace, nullptr);
  EXPECT_EQ(d.workspace_bytes, 0u);
  plx_prefill_args p;
  std::memset(&p, 0x5a, sizeof(p));
  plx_prefill_args_init(&p);
  EXPECT_EQ(p.cu_seqlens_q.data, nullptr);
  EXPECT_EQ(p.max_seqlen_q, -1);
  EXPECT_EQ(p.max_seqlen_k, -1);
  EXPECT_EQ(p.qk_scale, -1.f);
  plx_decode_args_init(nullptr);  // no-op, no crash
  plx_prefill_args_init(nullptr);
}

TEST(CApi, ContextCreateWithoutGpu) {
  plx_context* ctx = reinterpret_cast<plx_context*>(0x1);
  plx_status s = PLX_OK;
  EXPECT_NO_THROW(s = plx_context_create(nullptr, &ctx));
  if (s == PLX_OK) {  // a GPU host: the context works
    ASSERT_NE(ctx, nullptr);
    plx_device_info info;
    plx_device_info_init(&info);
    EXPECT_EQ(plx_context_get_device_info(ctx, &info), PLX_OK) << plx_last_error();
    EXPECT_GT(info.sm_count, 0);
    plx_context_destroy(ctx);
    GTEST_SKIP() << "a CUDA device is present; the no-device path is not reachable here";
  }
  EXPECT_EQ(s, PLX_ERROR_NO_DEVICE) << plx_status_string(s) << ": " << plx_last_error();
  EXPECT_EQ(ctx, nullptr);
  const std::string msg = plx_last_error();
  EXPECT_NE(msg.find("plx_context_create"), std::string::npos) << msg;
  EXPECT_NE(msg.find("CUDA"), std::string::npos) << msg;

  plx_context_options o;
  plx_context_options_init(&o);
  o.device = 0;
  o.cache_dir = "/tmp/parallax-c-api-test";
  EXPECT_EQ(plx_context_create(&o, &ctx), PLX_ERROR_NO_DEVICE) << plx_last_error();
}

TEST(CApi, ContextCreateArguments) {
  EXPECT_EQ(plx_context_create(nullptr, nullptr), PLX_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(plx_last_error()).find("ctx"), std::string::npos) << plx_last_error();
  plx_context_options o;
  plx_context_options_init(&o);
  o.device = -1;
  plx_context* ctx = nullptr;
  EXPECT_EQ(plx_context_create(&o, &ctx), PLX_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(plx_last_error()).find("options->device=-1"), std::string::npos) << plx_last_error();
  plx_context_destroy(nullptr);  // no-op
}

TEST(CApi, NullHandlesAndOutputs) {
  const plx_decode_args d = ValidDecode();
  EXPECT_EQ(plx_decode_validate(nullptr), PLX_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(plx_last_error()).find("args"), std::string::npos);
  EXPECT_EQ(plx_decode(nullptr, &d, nullptr), PLX_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(plx_last_error()).find("ctx"), std::string::npos) << plx_last_error();
  EXPECT_EQ(plx_decode(nullptr, nullptr, nullptr), PLX_ERROR_INVALID_ARGUMENT);
  size_t bytes = 0;
  EXPECT_EQ(plx_decode_workspace_size(nullptr, &d, &bytes), PLX_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(plx_decode_workspace_size(nullptr, &d, nullptr), PLX_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(plx_last_error()).find("bytes"), std::string::npos);
  plx_plan_info info;
  plx_plan_info_init(&info);
  EXPECT_EQ(plx_decode_plan_info(nullptr, &d, &info), PLX_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(plx_decode_plan_info(nullptr, &d, nullptr), PLX_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(plx_last_error()).find("info"), std::string::npos);
  const plx_prefill_args p = ValidPrefill();
  EXPECT_EQ(plx_prefill(nullptr, &p, nullptr), PLX_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(plx_last_error()).find("ctx"), std::string::npos);
  EXPECT_EQ(plx_prefill_plan_info(nullptr, &p, &info), PLX_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(plx_prefill_validate(nullptr), PLX_ERROR_INVALID_ARGUMENT);
  plx_device_info di;
  plx_device_info_init(&di);
  EXPECT_EQ(plx_context_get_device_info(nullptr, &di), PLX_ERROR_INVALID_ARGUMENT);
}

// Argument errors win over the missing context: validation happens first.
TEST(CApi, DecodeValidatesBeforeTouchingTheContext) {
  plx_decode_args a = ValidDecode();
  a.window = -3;
  EXPECT_EQ(plx_decode(nullptr, &a, nullptr), PLX_ERROR_INVALID_ARGUMENT);
  const std::string msg = plx_last_error();
  EXPECT_EQ(msg.rfind("plx_decode: window=-3", 0), 0u) << msg;
}

// ---- decode: valid inputs and their translation ---------------------------------------------

TEST(CApiDecode, ValidContiguous) {
  const plx_decode_args a = ValidDecode();
  ASSERT_EQ(plx_decode_validate(&a), PLX_OK) << plx_last_error();
  absl::StatusOr<parallax::DecodeCall> d = parallax::capi::TranslateDecodeArgs(a);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->problem.dtype, parallax::DType::kBF16);
  EXPECT_EQ(d->params.batch, kB);
  EXPECT_EQ(d->problem.num_q_heads, kHq);
  EXPECT_EQ(d->problem.num_kv_heads, kHkv);
  EXPECT_EQ(d->problem.head_dim, kD);
  EXPECT_EQ(d->params.seqlen, kL);
  EXPECT_EQ(d->params.q_stride_b, kHq * kD);
  EXPECT_EQ(d->params.q_stride_h, kD);
  EXPECT_EQ(d->params.r_stride_b, kHq * kD);
  EXPECT_EQ(d->params.o_stride_h, kD);
  EXPECT_EQ(d->params.k_stride_0, kL * kHkv * kD);
  EXPECT_EQ(d->params.k_stride_1, kHkv * kD);
  EXPECT_EQ(d->params.k_stride_h, kD);
  EXPECT_EQ(d->params.block_table, nullptr);
  EXPECT_EQ(d->params.seqlens, nullptr);
  EXPECT_EQ(d->problem.page_size, 0);
  EXPECT_EQ(d->num_pages, 0);
  EXPECT_EQ(d->params.q, Fake(1));
  EXPECT_EQ(d->params.r, Fake(2));
  EXPECT_EQ(d->params.out, Fake(5));
  EXPECT_TRUE(d->variant_key.empty());
}

TEST(CApiDecode, SoftmaxWhenRIsAbsent) {
  plx_decode_args a = ValidDecode(PLX_FP16);
  a.r.data = nullptr;  // the rest of r's descriptor is ignored
  a.r.dtype = PLX_INT32;
  absl::StatusOr<parallax::DecodeCall> d = parallax::capi::TranslateDecodeArgs(a);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->params.r, nullptr);
  EXPECT_EQ(d->problem.dtype, parallax::DType::kFP16);
}

TEST(CApiDecode, EngineShapeWithTokenDim) {
  plx_decode_args a = ValidDecode();
  a.q = T(Fake(1), PLX_BF16, {kB, 1, kHq, kD});
  a.r = T(Fake(2), PLX_BF16, {kB, 1, kHq, kD});
  a.out = T(Fake(5), PLX_BF16, {kB, 1, kHq, kD});
  absl::StatusOr<parallax::DecodeCall> d = parallax::capi::TranslateDecodeArgs(a);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->params.q_stride_b, kHq * kD);
  EXPECT_EQ(d->params.q_stride_h, kD);
  // q [B, 1, Hq, D] against out [B, Hq, D]: the same rows.
  a.out = T(Fake(5), PLX_BF16, {kB, kHq, kD});
  EXPECT_EQ(plx_decode_validate(&a), PLX_OK) << plx_last_error();
  // Two tokens per sequence are multi-token decode (c_api_extend_test.cc): r and out must follow.
  a.q = T(Fake(1), PLX_BF16, {kB, 2, kHq, kD});
  ExpectDecodeError(a, PLX_ERROR_INVALID_ARGUMENT, {"shape", "does not match"});
}

TEST(CApiDecode, HeadMajorCacheThroughStrides) {
  // A [B, Hkv, Lmax, D] cache described as shape [B, Lmax, Hkv, D] with permuted strides.
  plx_decode_args a = ValidDecode();
  a.k = T(Fake(3), PLX_BF16, {kB, kL, kHkv, kD}, {kHkv * kL * kD, kD, kL * kD, 1});
  a.v = T(Fake(4), PLX_BF16, {kB, kL, kHkv, kD}, {kHkv * kL * kD, kD, kL * kD, 1});
  absl::StatusOr<parallax::DecodeCall> d = parallax::capi::TranslateDecodeArgs(a);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->params.k_stride_0, kHkv * kL * kD);
  EXPECT_EQ(d->params.k_stride_1, kD);
  EXPECT_EQ(d->params.k_stride_h, kL * kD);
  EXPECT_EQ(d->params.v_stride_h, kL * kD);
}

TEST(CApiDecode, StridedQueryView) {
  // q is a slice of a wider [B, 3*Hq, D] projection output.
  plx_decode_args a = ValidDecode();
  a.q = T(Fake(1), PLX_BF16, {kB, kHq, kD}, {3 * kHq * kD, kD, 1});
  absl::StatusOr<parallax::DecodeCall> d = parallax::capi::TranslateDecodeArgs(a);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->params.q_stride_b, 3 * kHq * kD);
}

TEST(CApiDecode, Paged) {
  const plx_decode_args a = ValidPagedDecode();
  absl::StatusOr<parallax::DecodeCall> d = parallax::capi::TranslateDecodeArgs(a);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->problem.page_size, 16);
  EXPECT_EQ(d->params.seqlen, 4 * 16);
  EXPECT_EQ(d->params.block_table, Fake(6));
  EXPECT_EQ(d->params.block_table_stride, 4);
  EXPECT_EQ(d->params.seqlens, Fake(7));
  EXPECT_EQ(d->params.k_stride_0, 16 * kHkv * kD);
  EXPECT_EQ(d->params.k_stride_1, kHkv * kD);
  EXPECT_EQ(d->num_pages, 16);  // k.shape[0]: the pool's extent for the sm_90a family's TMA maps
}

TEST(CApiDecode, ContiguousWithSeqlens) {
  plx_decode_args a = ValidDecode();
  a.cache_seqlens = T(Fake(7), PLX_INT32, {kB});
  absl::StatusOr<parallax::DecodeCall> d = parallax::capi::TranslateDecodeArgs(a);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->params.seqlens, Fake(7));
  EXPECT_EQ(d->params.seqlen, kL);
  a.cache_seqlens = T(Fake(7), PLX_INT32, {kB + 1});
  ExpectDecodeError(a, PLX_ERROR_INVALID_ARGUMENT, {"cache_seqlens: shape[0]=3"});
  a.cache_seqlens = T(Fake(7), PLX_INT32, {kB}, {2});
  ExpectDecodeError(a, PLX_ERROR_INVALID_ARGUMENT, {"cache_seqlens: strides[0]=2"});
  a.cache_seqlens = T(Fake(7), PLX_INT32, {kB, 1});
  ExpectDecodeError(a, PLX_ERROR_INVALID_ARGUMENT, {"cache_seqlens: ndim=2"});
}

TEST(CApiDecode, OptionsPassThrough) {
  plx_decode_args a = ValidDecode();
  a.qk_scale = 0.f;  // tau = 0 is valid: uniform weights
  a.window = 32;
  a.affine = PLX_AFFINE_AMPLIFIED;
  a.eps = 1e-3f;
  a.num_splits = 4;
  a.workspace = Fake(9);
  a.workspace_bytes = 4096;
  absl::StatusOr<parallax::DecodeCall> d = parallax::capi::TranslateDecodeArgs(a);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->params.scale_log2, 0.f);
  EXPECT_EQ(d->params.window, 32);
  EXPECT_EQ(d->algorithm.affine, parallax::Affine::kAmplified);
  EXPECT_FLOAT_EQ(d->params.eps, 1e-3f);
  EXPECT_EQ(d->num_splits, 4);
  EXPECT_EQ(d->workspace, Fake(9));
  EXPECT_EQ(d->workspace_bytes, 4096u);
}

// ---- decode: every validation path ----------------------------------------------------------

TEST(CApiDecode, NullPointers) {
  for (const char* which : {"q", "k", "v", "out"}) {
    plx_decode_args a = ValidDecode();
    plx_tensor* t = std::string(which) == "q" ? &a.q : std::string(which) == "k" ? &a.k
                    : std::string(which) == "v" ? &a.v : &a.out;
    t->data = nullptr;
    ExpectDecodeError(a, PLX_ERROR_INVALID_ARGUMENT, {(std::string(which) + ": data is NULL").c_str()});
  }
  plx_decode_args a = ValidPagedDecode();
  a.cache_seqlens.data = nullptr;
  ExpectDecodeError(a, PLX_ERROR_INVALID_ARGUMENT, {"cache_seqlens: required with block_table"});
}

TEST(CApiDecode, DTypes) {
  plx_decode_args a = ValidDecode(PLX_INT32);
  ExpectDecodeError(a, PLX_ERROR_UNSUPPORTED, {"q: dtype=int32", "bf16 or fp16"});
  a = ValidDecode();
  a.q.dtype = PLX_DTYPE_UNSET;
  ExpectDecodeError(a, PLX_ERROR_INVALID_ARGUMENT, {"q: dtype is unset"});
  a = ValidDecode();
  a.k.dtype = static_cast<plx_dtype>(42);
  ExpectDecodeError(a, PLX_ERROR_INVALID_ARGUMENT, {"k: dtype=42"});
  a = ValidDecode();
  a.k.dtype = PLX_FP16;
  ExpectDecodeError(a, PLX_ERROR_INVALID_ARGUMENT, {"k: dtype=fp16 does not match q's bf16"});
  a = ValidDecode();
  a.v.dtype = PLX_FP16;
  ExpectDecodeError(a, PLX_ERROR_INVALID_ARGUMENT, {"v: dtype=fp16"});
  a = ValidDecode();
  a.r.dtype = PLX_FP16;
  ExpectDecodeError(a, PLX_ERROR_INVALID_ARGUMENT, {"r: dtype=fp16"});
  a = ValidDecode();
  a.out.dtype = PLX_FP16;
  ExpectDecodeError(a, PLX_ERROR_INVALID_ARGUMENT, {"out: dtype=fp16"});
  a = ValidPagedDecode();
  a.block_table.dtype = PLX_BF16;
  ExpectDecodeError(a, PLX_ERROR_INVALID_ARGUMENT, {"block_table: dtype=bf16: must be int32"});
  a = ValidPagedDecode();
  a.cache_seqlens.dtype = PLX_FP16;
  ExpectDecodeError(a, PLX_ERROR_INVALID_ARGUMENT, {"cache_seqlens: dtype=fp16: must be int32"});
}

TEST(CApiDecode, ShapeMismatches) {
  plx_decode_args a = ValidDecode();
  a.out = T(Fake(5), PLX_BF16, {kB, kHq - 1, kD});
  ExpectDecodeError(a, PLX_ERROR_INVALID_ARGUMENT, {"out: shape [2, 7, 128] does not match q's"});
  a = ValidDecode();
  a.r = T(Fake(2), PLX_BF16, {kB + 1, kHq, kD});
  ExpectDecodeError(a, PLX_ERROR_INVALID_ARGUMENT, {"r: shape [3, 8, 128]"});
  a = ValidDecode();
  a.v = T(Fake(4), PLX_BF16, {kB, kL + 1, kHkv, kD});
  ExpectDecodeError(a, PLX_ERROR_INVALID_ARGUMENT, {"v: shape [2, 65, 2, 128] does not match k's [2, 64, 2, 128]"});
  a = ValidDecode();
  a.k = T(Fake(3), PLX_BF16, {kB, kL, kHkv, 64});
  a.v = T(Fake(4), PLX_BF16, {kB, kL, kHkv, 64});
  ExpectDecodeError(a, PLX_ERROR_INVALID_ARGUMENT, {"k: head_dim=64", "q's head_dim=128"});
  a = ValidDecode();
  a.k = T(Fake(3), PLX_BF16, {kB + 1, kL, kHkv, kD});
  a.v = T(Fake(4), PLX_BF16, {kB + 1, kL, kHkv, kD});
  ExpectDecodeError(a, PLX_ERROR_INVALID_ARGUMENT, {"k: shape[0]=3", "batch size 2", "block_table"});
  a = ValidDecode();
  a.k = T(Fake(3), PLX_BF16, {kB, kL, kD});
  ExpectDecodeError(a, PLX_ERROR_INVALID_ARGUMENT, {"k: ndim=3: must be 4"});
  a = ValidDecode();
  a.q = T(Fake(1), PLX_BF16, {kB, kHq * kD});
  ExpectDecodeError(a, PLX_ERROR_INVALID_ARGUMENT, {"q: ndim=2"});
  a = ValidDecode();
  a.q.ndim = 5;
  ExpectDecodeError(a, PLX_ERROR_INVALID_ARGUMENT, {"q: ndim=5: must be in 1..4"});
  a = ValidDecode();
  a.q.shape[0] = -1;
  ExpectDecodeError(a, PLX_ERROR_INVALID_ARGUMENT, {"q: shape[0]=-1"});
  a = ValidDecode();
  a.q.shape[0] = int64_t{1} << 40;
  ExpectDecodeError(a, PLX_ERROR_UNSUPPORTED, {"q: shape[0]=1099511627776"});
}

TEST(CApiDecode, HeadDim) {
  for (int d : {32, 96, 160, 512}) {
    plx_decode_args a = ValidDecode();
    a.q = T(Fake(1), PLX_BF16, {kB, kHq, d});
    ExpectDecodeError(a, PLX_ERROR_UNSUPPORTED, {"q: head_dim=", "64, 128 or 256"});
  }
  for (int d : {64, 256}) {
    plx_decode_args a = ValidDecode();
    a.q = T(Fake(1), PLX_BF16, {kB, kHq, d});
    a.r = T(Fake(2), PLX_BF16, {kB, kHq, d});
    a.out = T(Fake(5), PLX_BF16, {kB, kHq, d});
    a.k = T(Fake(3), PLX_BF16, {kB, kL, kHkv, d});
    a.v = T(Fake(4), PLX_BF16, {kB, kL, kHkv, d});
    EXPECT_EQ(plx_decode_validate(&a), PLX_OK) << plx_last_error();
  }
}

TEST(CApiDecode, Heads) {
  plx_decode_args a = ValidDecode();
  a.k = T(Fake(3), PLX_BF16, {kB, kL, 3, kD});
  a.v = T(Fake(4), PLX_BF16, {kB, kL, 3, kD});
  ExpectDecodeError(a, PLX_ERROR_INVALID_ARGUMENT, {"k: num_kv_heads=3", "num_q_heads=8"});
  a.k = T(Fake(3), PLX_BF16, {kB, kL, 0, kD});
  a.v = T(Fake(4), PLX_BF16, {kB, kL, 0, kD});
  ExpectDecodeError(a, PLX_ERROR_INVALID_ARGUMENT, {"k: num_kv_heads=0"});
  // MQA (group 8) and group 1 are fine; group 128 is beyond the kernels.
  for (int hkv : {1, 8}) {
    a.k = T(Fake(3), PLX_BF16, {kB, kL, hkv, kD});
    a.v = T(Fake(4), PLX_BF16, {kB, kL, hkv, kD});
    EXPECT_EQ(plx_decode_validate(&a), PLX_OK) << plx_last_error();
  }
  a = ValidDecode();
  a.q = T(Fake(1), PLX_BF16, {kB, 128, kD});
  a.r = T(Fake(2), PLX_BF16, {kB, 128, kD});
  a.out = T(Fake(5), PLX_BF16, {kB, 128, kD});
  a.k = T(Fake(3), PLX_BF16, {kB, kL, 1, kD});
  a.v = T(Fake(4), PLX_BF16, {kB, kL, 1, kD});
  ExpectDecodeError(a, PLX_ERROR_UNSUPPORTED, {"k: GQA group size 128"});
}

TEST(CApiDecode, Strides) {
  plx_decode_args a = ValidDecode();
  a.k = T(Fake(3), PLX_BF16, {kB, kL, kHkv, kD}, {kL * kHkv * kD * 2, kHkv * kD * 2, kD * 2, 2});
  ExpectDecodeError(a, PLX_ERROR_INVALID_ARGUMENT, {"k: strides[3]=2", "stride 1"});
  a = ValidDecode();
  a.q = T(Fake(1), PLX_BF16, {kB, kHq, kD}, {kHq * kD, kD, 0});
  ExpectDecodeError(a, PLX_ERROR_INVALID_ARGUMENT, {"q: strides[2]=0"});
  a = ValidDecode();
  a.out = T(Fake(5), PLX_BF16, {kB, kHq, kD}, {kHq * 130, 130, 1});
  ExpectDecodeError(a, PLX_ERROR_INVALID_ARGUMENT, {"out: strides[1]=130", "multiple of 8"});
  a = ValidDecode();
  a.v = T(Fake(4), PLX_BF16, {kB, kL, kHkv, kD}, {-1, kHkv * kD, kD, 1});
  ExpectDecodeError(a, PLX_ERROR_INVALID_ARGUMENT, {"v: strides[0]=-1"});
  a = ValidDecode();
  a.q.data = reinterpret_cast<void*>(0x100008);
  ExpectDecodeError(a, PLX_ERROR_INVALID_ARGUMENT, {"q: data=", "16-byte aligned"});
  // A stride on a size-1 dimension does not matter (torch gives arbitrary ones there).
  a = ValidDecode();
  a.q = T(Fake(1), PLX_BF16, {kB, 1, kHq, kD}, {kHq * kD, 3, kD, 1});
  a.r.data = nullptr;
  a.out = T(Fake(5), PLX_BF16, {kB, 1, kHq, kD});
  EXPECT_EQ(plx_decode_validate(&a), PLX_OK) << plx_last_error();
  // Broadcast (zero-stride) batch dimension of a query is allowed.
  a = ValidDecode();
  a.r = T(Fake(2), PLX_BF16, {kB, kHq, kD}, {0, kD, 1});
  EXPECT_EQ(plx_decode_validate(&a), PLX_OK) << plx_last_error();
}

// Offsets must stay far from int64 overflow: (shape-1) x stride summed over dims <= 2^48.
TEST(CApiDecode, StridesAddressingBeyondTwoToThe48AreRefused) {
  constexpr int64_t kHuge = std::numeric_limits<int64_t>::max() - 7;  // 2^63-8: a multiple of 8
  plx_decode_args a = ValidDecode();
  a.k = T(Fake(3), PLX_BF16, {kB, kL, kHkv, kD}, {kHuge, kHkv * kD, kD, 1});
  ExpectDecodeError(a, PLX_ERROR_INVALID_ARGUMENT, {"k: strides[0]=9223372036854775800", "2^48"});
  a = ValidDecode();  // each dimension's span is under 2^48, their sum is not
  a.v = T(Fake(4), PLX_BF16, {kB, kL, kHkv, kD}, {int64_t{1} << 47, int64_t{1} << 42, kD, 1});
  ExpectDecodeError(a, PLX_ERROR_INVALID_ARGUMENT, {"v: strides[1]=4398046511104 with shape[1]=64", "2^48"});
  a = ValidDecode();  // just past the bound
  a.q = T(Fake(1), PLX_BF16, {kB, kHq, kD}, {(int64_t{1} << 48) - 8, kD, 1});
  ExpectDecodeError(a, PLX_ERROR_INVALID_ARGUMENT, {"q: strides[0]=281474976710648", "2^48"});
  a = ValidDecode();  // contiguous, but too many elements to address
  a.q = T(Fake(1), PLX_BF16, {kIntMax32, 1024, 256});
  ExpectDecodeError(a, PLX_ERROR_INVALID_ARGUMENT, {"q: strides[0]=262144 with shape[0]=2147483647", "2^48"});
  a = ValidDecode();  // a huge stride on a size-1 dimension addresses nothing
  a.q = T(Fake(1), PLX_BF16, {kB, 1, kHq, kD}, {kHq * kD, kHuge, kD, 1});
  a.out = T(Fake(5), PLX_BF16, {kB, 1, kHq, kD});
  EXPECT_EQ(plx_decode_validate(&a), PLX_OK) << plx_last_error();
}

// Outputs of different batches / heads / tokens must not alias; inputs may broadcast.
TEST(CApiDecode, OutputStridesMustNotAlias) {
  plx_decode_args a = ValidDecode();
  a.out = T(Fake(5), PLX_BF16, {kB, kHq, kD}, {0, kD, 1});
  ExpectDecodeError(a, PLX_ERROR_INVALID_ARGUMENT, {"out: strides[0]=0 with shape[0]=2", "alias"});
  a = ValidDecode();
  a.out = T(Fake(5), PLX_BF16, {kB, kHq, kD}, {kHq * kD, 0, 1});
  ExpectDecodeError(a, PLX_ERROR_INVALID_ARGUMENT, {"out: strides[1]=0", "alias"});
  a = ValidDecode();  // heads 8 elements apart overlap 128-wide rows
  a.out = T(Fake(5), PLX_BF16, {kB, kHq, kD}, {kHq * kD, 8, 1});
  ExpectDecodeError(a, PLX_ERROR_INVALID_ARGUMENT, {"out: strides[1]=8 overlaps dimension 2", "alias"});
  a = ValidDecode();  // batches interleaved into the heads' span
  a.out = T(Fake(5), PLX_BF16, {kB, kHq, kD}, {kD, kD, 1});
  ExpectDecodeError(a, PLX_ERROR_INVALID_ARGUMENT, {"out: strides[", "overlaps dimension", "alias"});
  // Still fine: a head-major output view, padded rows, and a broadcast input.
  a = ValidDecode();
  a.out = T(Fake(5), PLX_BF16, {kB, kHq, kD}, {kD, kB * kD, 1});
  EXPECT_EQ(plx_decode_validate(&a), PLX_OK) << plx_last_error();
  a.out = T(Fake(5), PLX_BF16, {kB, kHq, kD}, {kHq * 2 * kD, 2 * kD, 1});
  EXPECT_EQ(plx_decode_validate(&a), PLX_OK) << plx_last_error();
  a.q = T(Fake(1), PLX_BF16, {kB, kHq, kD}, {0, kD, 1});
  EXPECT_EQ(plx_decode_validate(&a), PLX_OK) << plx_last_error();
  a.out = T(Fake(5), PLX_BF16, {0, kHq, kD}, {0, 0, 1});  // empty: nothing is written
  a.q = T(Fake(1), PLX_BF16, {0, kHq, kD});
  a.r = T(Fake(2), PLX_BF16, {0, kHq, kD});
  a.k = T(Fake(3), PLX_BF16, {0, kL, kHkv, kD});
  a.v = T(Fake(4), PLX_BF16, {0, kL, kHkv, kD});
  EXPECT_EQ(plx_decode_validate(&a), PLX_OK) << plx_last_error();
}

TEST(CApiDecode, PagedErrors) {
  plx_decode_args a = ValidPagedDecode();
  a.k = T(Fake(3), PLX_BF16, {16, 12, kHkv, kD});
  a.v = T(Fake(4), PLX_BF16, {16, 12, kHkv, kD});
  ExpectDecodeError(a, PLX_ERROR_UNSUPPORTED, {"k: page_size=12", "power of two"});
  a = ValidPagedDecode();
  a.block_table = T(Fake(6), PLX_INT32, {kB + 1, 4});
  ExpectDecodeError(a, PLX_ERROR_INVALID_ARGUMENT, {"block_table: shape[0]=3"});
  a = ValidPagedDecode();
  a.block_table = T(Fake(6), PLX_INT32, {kB * 4});
  ExpectDecodeError(a, PLX_ERROR_INVALID_ARGUMENT, {"block_table: ndim=1: must be 2"});
  a = ValidPagedDecode();
  a.block_table = T(Fake(6), PLX_INT32, {kB, 4}, {8, 2});
  ExpectDecodeError(a, PLX_ERROR_INVALID_ARGUMENT, {"block_table: strides[1]=2"});
  a = ValidPagedDecode();  // a row-padded block table is fine
  a.block_table = T(Fake(6), PLX_INT32, {kB, 4}, {8, 1});
  absl::StatusOr<parallax::DecodeCall> d = parallax::capi::TranslateDecodeArgs(a);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->params.block_table_stride, 8);
  a = ValidPagedDecode();  // the page pool need not be a multiple of the batch
  a.k = T(Fake(3), PLX_BF16, {7, 16, kHkv, kD});
  a.v = T(Fake(4), PLX_BF16, {7, 16, kHkv, kD});
  EXPECT_EQ(plx_decode_validate(&a), PLX_OK) << plx_last_error();
}

TEST(CApiDecode, Options) {
  plx_decode_args a = ValidDecode();
  a.window = -1;
  ExpectDecodeError(a, PLX_ERROR_INVALID_ARGUMENT, {"window=-1", ">= 0"});
  a = ValidDecode();
  a.affine = static_cast<plx_affine>(7);
  ExpectDecodeError(a, PLX_ERROR_INVALID_ARGUMENT, {"affine=7"});
  a = ValidDecode();
  a.affine = PLX_AFFINE_AMPLIFIED;
  a.eps = 0.f;
  ExpectDecodeError(a, PLX_ERROR_INVALID_ARGUMENT, {"eps=0", "amplified"});
  a.eps = 1e-6f;
  EXPECT_EQ(plx_decode_validate(&a), PLX_OK) << plx_last_error();
  a = ValidDecode();
  a.eps = 0.f;  // unused with plain affine
  EXPECT_EQ(plx_decode_validate(&a), PLX_OK) << plx_last_error();
  a.qk_scale = std::nanf("");
  ExpectDecodeError(a, PLX_ERROR_INVALID_ARGUMENT, {"qk_scale=nan"});
  a = ValidDecode();
  a.num_splits = -2;
  ExpectDecodeError(a, PLX_ERROR_INVALID_ARGUMENT, {"num_splits=-2"});
  a = ValidDecode();
  a.workspace_bytes = 1024;
  ExpectDecodeError(a, PLX_ERROR_INVALID_ARGUMENT, {"workspace_bytes=1024", "NULL workspace"});
}

TEST(CApiDecode, VariantKeys) {
  plx_decode_args a = ValidDecode();
  a.variant = "not-a-key";
  ExpectDecodeError(a, PLX_ERROR_INVALID_ARGUMENT, {"variant: bad variant key 'not-a-key'"});

  // A key built for exactly this problem is accepted.
  const std::string key = DefaultKey(parallax::Mode::kDecode, parallax::DType::kBF16);
  ASSERT_FALSE(key.empty());
  a.variant = key.c_str();
  EXPECT_EQ(plx_decode_validate(&a), PLX_OK) << plx_last_error();
  absl::StatusOr<parallax::DecodeCall> d = parallax::capi::TranslateDecodeArgs(a);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->variant_key, key);
  a.variant = "";  // empty = runtime choice
  EXPECT_EQ(plx_decode_validate(&a), PLX_OK) << plx_last_error();

  // The same key against softmax (r absent) or another dtype does not match the call.
  a = ValidDecode();
  a.variant = key.c_str();
  a.r.data = nullptr;
  ExpectDecodeError(a, PLX_ERROR_INVALID_ARGUMENT, {"variant: '", "but this call is", "none-plain"});
  a = ValidDecode(PLX_FP16);
  a.variant = key.c_str();
  ExpectDecodeError(a, PLX_ERROR_INVALID_ARGUMENT, {"variant: '", "decode-fp16"});

  // A test-only key (its kernel faults or hangs on purpose) never gets past the C API.
  for (const char* suffix : {"-testfault", "-testhang"}) {
    const std::string test_key = key + suffix;
    a = ValidDecode();
    a.variant = test_key.c_str();
    ExpectDecodeError(a, PLX_ERROR_INVALID_ARGUMENT, {"variant: test-only variant '", suffix});
    EXPECT_FALSE(parallax::capi::TranslateDecodeArgs(a).ok());
  }

  // A prefill key is refused by decode.
  const std::string pkey = DefaultKey(parallax::Mode::kPrefill, parallax::DType::kBF16);
  ASSERT_FALSE(pkey.empty());
  a = ValidDecode();
  a.variant = pkey.c_str();
  ExpectDecodeError(a, PLX_ERROR_INVALID_ARGUMENT, {"variant: '", "prefill kernel"});
}

TEST(CApiDecode, RuntimeChecksRunInValidation) {
  plx_decode_args a = ValidDecode();
  a.num_splits = 257;  // well-formed, but more than the runtime launches
  ExpectDecodeError(a, PLX_ERROR_INVALID_ARGUMENT, {"plx_decode_validate: num_splits=257: must be in 0..256"});
  a.num_splits = 256;
  EXPECT_EQ(plx_decode_validate(&a), PLX_OK) << plx_last_error();
}

// ---- one call, whichever front end: C descriptors or the C++ DecodeArgs/PrefillArgs ----------

// The C++ arguments for the tensors ValidDecode / ValidPrefill describe: sizes and pointers.
template <typename Args>
Args CppArgs(parallax::DType dtype) {
  Args a;
  a.dtype = dtype;
  a.batch = kB;
  a.num_q_heads = kHq;
  a.num_kv_heads = kHkv;
  a.head_dim = kD;
  a.q = Fake(1);
  a.r = Fake(2);
  a.k = Fake(3);
  a.v = Fake(4);
  a.out = Fake(5);
  return a;
}

TEST(CApiCall, DecodeParamsAreBuiltOnceAndMatchTheCppFrontEnd) {
  plx_decode_args a = ValidPagedDecode();
  a.qk_scale = 0.125f;
  a.window = 32;
  a.affine = PLX_AFFINE_AMPLIFIED;
  a.eps = 1e-3f;
  a.num_splits = 4;
  a.workspace = Fake(9);
  a.workspace_bytes = 4096;
  absl::StatusOr<parallax::DecodeCall> c = parallax::capi::TranslateDecodeArgs(a);
  ASSERT_TRUE(c.ok()) << c.status();

  parallax::DecodeArgs d = CppArgs<parallax::DecodeArgs>(parallax::DType::kBF16);
  d.q_stride_b = d.r_stride_b = d.o_stride_b = kHq * kD;
  d.q_stride_h = d.r_stride_h = d.o_stride_h = kD;
  d.k_stride_0 = d.v_stride_0 = 16 * kHkv * kD;
  d.k_stride_1 = d.v_stride_1 = kHkv * kD;
  d.k_stride_h = d.v_stride_h = kD;
  d.seqlens = static_cast<const int*>(Fake(7));
  d.seqlen = 4 * 16;
  d.block_table = static_cast<const int*>(Fake(6));
  d.block_table_stride = 4;
  d.page_size = 16;
  d.qk_scale = 0.125f;
  d.window = 32;
  d.affine = parallax::Affine::kAmplified;
  d.eps = 1e-3f;
  d.num_splits = 4;
  d.workspace = Fake(9);
  d.workspace_bytes = 4096;
  const parallax::DecodeCall want = parallax::ToDecodeCall(d);
  ASSERT_TRUE(parallax::CheckDecodeCall(want).ok());

  EXPECT_EQ(c->problem, want.problem);
  EXPECT_EQ(c->problem.kv_layout, parallax::KvLayout::kPaged);
  EXPECT_TRUE(c->problem.window);
  EXPECT_EQ(c->algorithm, want.algorithm);
  EXPECT_EQ(c->algorithm.probe, parallax::Probe::kLearned);
  EXPECT_TRUE(SameParams(c->params, want.params));
  EXPECT_EQ(c->num_splits, 4);
  EXPECT_EQ(c->workspace, want.workspace);
  EXPECT_EQ(c->workspace_bytes, want.workspace_bytes);
  EXPECT_FLOAT_EQ(c->params.scale_log2, 0.125f * 1.4426950408889634f);
  // What the plan decides is left to the launch.
  EXPECT_EQ(c->params.num_splits, 0);
  EXPECT_EQ(c->params.part_stats, nullptr);
  EXPECT_EQ(c->params.part_o, nullptr);
  EXPECT_EQ(c->params.counters, nullptr);
}

TEST(CApiCall, DefaultScaleIsOneOverSqrtHeadDimInLog2Units) {
  absl::StatusOr<parallax::DecodeCall> c = parallax::capi::TranslateDecodeArgs(ValidDecode());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_FLOAT_EQ(c->params.scale_log2, 1.4426950408889634f / std::sqrt(static_cast<float>(kD)));
  EXPECT_EQ(c->params.scale_log2, parallax::ScaleLog2(-1.f, kD));
}

TEST(CApiCall, PrefillParamsMatchTheCppFrontEnd) {
  plx_prefill_args a = ValidPrefill();
  a.window = 16;
  absl::StatusOr<parallax::PrefillCall> c = parallax::capi::TranslatePrefillArgs(a);
  ASSERT_TRUE(c.ok()) << c.status();

  parallax::PrefillArgs p = CppArgs<parallax::PrefillArgs>(parallax::DType::kFP16);
  p.q_stride_b = p.r_stride_b = p.o_stride_b = 40 * kHq * kD;
  p.q_stride_l = p.r_stride_l = p.o_stride_l = kHq * kD;
  p.q_stride_h = p.r_stride_h = p.o_stride_h = kD;
  p.k_stride_b = p.v_stride_b = 50 * kHkv * kD;
  p.k_stride_l = p.v_stride_l = kHkv * kD;
  p.k_stride_h = p.v_stride_h = kD;
  p.seqlen_q = 40;
  p.seqlen_k = 50;
  p.window = 16;
  const parallax::PrefillCall want = parallax::ToPrefillCall(p);
  ASSERT_TRUE(parallax::CheckPrefillCall(want).ok());
  EXPECT_EQ(c->problem, want.problem);
  EXPECT_EQ(c->problem.mode, parallax::Mode::kPrefill);
  EXPECT_EQ(c->algorithm, want.algorithm);
  EXPECT_TRUE(SameParams(c->params, want.params));
}

// ---- prefill --------------------------------------------------------------------------------

TEST(CApiPrefill, ValidBatched) {
  const plx_prefill_args a = ValidPrefill();
  absl::StatusOr<parallax::PrefillCall> p = parallax::capi::TranslatePrefillArgs(a);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->problem.dtype, parallax::DType::kFP16);
  EXPECT_EQ(p->params.batch, kB);
  EXPECT_EQ(p->params.seqlen_q, 40);
  EXPECT_EQ(p->params.seqlen_k, 50);
  EXPECT_EQ(p->params.q_stride_b, 40 * kHq * kD);
  EXPECT_EQ(p->params.q_stride_l, kHq * kD);
  EXPECT_EQ(p->params.q_stride_h, kD);
  EXPECT_EQ(p->params.k_stride_b, 50 * kHkv * kD);
  EXPECT_EQ(p->params.k_stride_l, kHkv * kD);
  EXPECT_EQ(p->params.o_stride_l, kHq * kD);
  EXPECT_EQ(p->params.cu_seqlens_q, nullptr);
}

TEST(CApiPrefill, ValidPacked) {
  const plx_prefill_args a = ValidPackedPrefill();
  absl::StatusOr<parallax::PrefillCall> p = parallax::capi::TranslatePrefillArgs(a);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->params.batch, 2);
  EXPECT_EQ(p->params.seqlen_q, 60);
  EXPECT_EQ(p->params.seqlen_k, 70);
  EXPECT_EQ(p->params.cu_seqlens_q, Fake(6));
  EXPECT_EQ(p->params.cu_seqlens_k, Fake(7));
  EXPECT_EQ(p->params.q_stride_b, 0);
  EXPECT_EQ(p->params.q_stride_l, kHq * kD);
  EXPECT_EQ(p->params.k_stride_l, kHkv * kD);
  EXPECT_EQ(p->params.k_stride_h, kD);
}

TEST(CApiPrefill, Errors) {
  plx_prefill_args a = ValidPackedPrefill();
  a.cu_seqlens_k.data = nullptr;
  ExpectPrefillError(a, PLX_ERROR_INVALID_ARGUMENT, {"cu_seqlens_k", "together"});
  a = ValidPrefill();
  a.cu_seqlens_k = T(Fake(7), PLX_INT32, {3});
  ExpectPrefillError(a, PLX_ERROR_INVALID_ARGUMENT, {"cu_seqlens_q", "together"});
  a = ValidPackedPrefill();
  a.max_seqlen_q = -1;
  ExpectPrefillError(a, PLX_ERROR_INVALID_ARGUMENT, {"max_seqlen_q=-1", "required"});
  a = ValidPackedPrefill();
  a.max_seqlen_k = 500;
  ExpectPrefillError(a, PLX_ERROR_INVALID_ARGUMENT, {"max_seqlen_k=500", "exceeds"});
  a = ValidPackedPrefill();
  a.cu_seqlens_k = T(Fake(7), PLX_INT32, {4});
  ExpectPrefillError(a, PLX_ERROR_INVALID_ARGUMENT, {"cu_seqlens_k: shape[0]=4"});
  a = ValidPackedPrefill();
  a.cu_seqlens_q.dtype = PLX_BF16;
  ExpectPrefillError(a, PLX_ERROR_INVALID_ARGUMENT, {"cu_seqlens_q: dtype=bf16"});
  a = ValidPackedPrefill();
  a.q = T(Fake(1), PLX_BF16, {2, 45, kHq, kD});
  ExpectPrefillError(a, PLX_ERROR_INVALID_ARGUMENT, {"q: ndim=4", "packed"});
  a = ValidPrefill();
  a.q = T(Fake(1), PLX_FP16, {80, kHq, kD});
  ExpectPrefillError(a, PLX_ERROR_INVALID_ARGUMENT, {"q: ndim=3", "cu_seqlens_q"});
  a = ValidPrefill();
  a.out = T(Fake(5), PLX_FP16, {kB, 41, kHq, kD});
  ExpectPrefillError(a, PLX_ERROR_INVALID_ARGUMENT, {"out: shape [2, 41, 8, 128] does not match q's"});
  a = ValidPrefill();
  a.r.dtype = PLX_BF16;
  ExpectPrefillError(a, PLX_ERROR_INVALID_ARGUMENT, {"r: dtype=bf16 does not match q's fp16"});
  a = ValidPrefill();
  a.k = T(Fake(3), PLX_FP16, {kB + 1, 50, kHkv, kD});
  a.v = T(Fake(4), PLX_FP16, {kB + 1, 50, kHkv, kD});
  ExpectPrefillError(a, PLX_ERROR_INVALID_ARGUMENT, {"k: shape[0]=3"});
  a = ValidPrefill();
  a.k = T(Fake(3), PLX_FP16, {kB, 50, 5, kD});
  a.v = T(Fake(4), PLX_FP16, {kB, 50, 5, kD});
  ExpectPrefillError(a, PLX_ERROR_INVALID_ARGUMENT, {"k: num_kv_heads=5"});
  a = ValidPrefill();
  a.q = T(Fake(1), PLX_FP16, {kB, 40, kHq, 80});
  ExpectPrefillError(a, PLX_ERROR_UNSUPPORTED, {"q: head_dim=80"});
  a = ValidPrefill();
  a.v = T(Fake(4), PLX_FP16, {kB, 50, kHkv, kD}, {50 * kHkv * kD, kHkv * kD, kD, 4});
  ExpectPrefillError(a, PLX_ERROR_INVALID_ARGUMENT, {"v: strides[3]=4"});
  a = ValidPrefill();  // a broadcast token dimension of the output
  a.out = T(Fake(5), PLX_FP16, {kB, 40, kHq, kD}, {40 * kHq * kD, 0, kD, 1});
  ExpectPrefillError(a, PLX_ERROR_INVALID_ARGUMENT, {"out: strides[1]=0 with shape[1]=40", "alias"});
  a = ValidPackedPrefill();
  a.out = T(Fake(5), PLX_BF16, {90, kHq, kD}, {kD, kD, 1});
  ExpectPrefillError(a, PLX_ERROR_INVALID_ARGUMENT, {"out: strides[", "overlaps dimension", "alias"});
  a = ValidPrefill();
  a.k = T(Fake(3), PLX_FP16, {kB, 50, kHkv, kD}, {int64_t{1} << 47, int64_t{1} << 42, kD, 1});
  ExpectPrefillError(a, PLX_ERROR_INVALID_ARGUMENT, {"k: strides[1]=", "2^48"});
  a = ValidPrefill();
  a.window = -5;
  ExpectPrefillError(a, PLX_ERROR_INVALID_ARGUMENT, {"window=-5"});
  a = ValidPrefill();
  a.q.data = nullptr;
  ExpectPrefillError(a, PLX_ERROR_INVALID_ARGUMENT, {"q: data is NULL"});
  a = ValidPrefill();
  a.variant = "decode-fp16-d128-h8x2-contig-nowin.learned-plain.mma-n64-w4-s3-splitauto-g4";
  ExpectPrefillError(a, PLX_ERROR_INVALID_ARGUMENT, {"variant: "});
}

// ---- status mapping -------------------------------------------------------------------------

TEST(CApi, StatusMapping) {
  using parallax::capi::ToPlxStatus;
  EXPECT_EQ(ToPlxStatus(absl::OkStatus()), PLX_OK);
  EXPECT_EQ(ToPlxStatus(absl::InvalidArgumentError("x")), PLX_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(ToPlxStatus(absl::UnimplementedError("x")), PLX_ERROR_UNSUPPORTED);
  EXPECT_EQ(ToPlxStatus(absl::FailedPreconditionError("smem")), PLX_ERROR_UNSUPPORTED);
  EXPECT_EQ(ToPlxStatus(absl::UnavailableError("no CUDA driver")), PLX_ERROR_NO_DEVICE);
  EXPECT_EQ(ToPlxStatus(absl::InternalError("cuLaunchKernel: CUDA_ERROR_INVALID_VALUE (x)")), PLX_ERROR_CUDA);
  EXPECT_EQ(ToPlxStatus(absl::InternalError("cuMemAlloc_v2: CUDA_ERROR_OUT_OF_MEMORY (x)")),
            PLX_ERROR_OUT_OF_MEMORY);
  EXPECT_EQ(ToPlxStatus(absl::InternalError("compiling k.cu: NVRTC_ERROR_COMPILATION")), PLX_ERROR_COMPILE);
  EXPECT_EQ(ToPlxStatus(absl::InternalError("something else")), PLX_ERROR_INTERNAL);
  EXPECT_EQ(ToPlxStatus(absl::UnknownError("?")), PLX_ERROR_INTERNAL);
}

// ---- thread-local errors --------------------------------------------------------------------

TEST(CApi, LastErrorIsThreadLocal) {
  plx_decode_args a = ValidDecode();
  a.window = -7;
  ASSERT_EQ(plx_decode_validate(&a), PLX_ERROR_INVALID_ARGUMENT);
  const std::string main_msg = plx_last_error();
  ASSERT_NE(main_msg.find("window=-7"), std::string::npos);

  std::string fresh, t1_msg, t2_msg;
  std::thread t1([&] {
    fresh = plx_last_error();  // nothing failed on this thread yet
    plx_decode_args b = ValidDecode();
    b.q.data = nullptr;
    plx_decode_validate(&b);
    t1_msg = plx_last_error();
  });
  t1.join();
  std::thread t2([&] {
    plx_prefill_args p = ValidPrefill();
    p.max_seqlen_q = 3;  // fine for batched; break the head dim instead
    p.q = T(Fake(1), PLX_FP16, {kB, 40, kHq, 96});
    plx_prefill_validate(&p);
    t2_msg = plx_last_error();
  });
  t2.join();
  EXPECT_EQ(fresh, "");
  EXPECT_NE(t1_msg.find("q: data is NULL"), std::string::npos) << t1_msg;
  EXPECT_NE(t2_msg.find("q: head_dim=96"), std::string::npos) << t2_msg;
  EXPECT_EQ(std::string(plx_last_error()), main_msg);  // untouched by the other threads

  // A successful call leaves the last error in place (errno-like).
  const plx_decode_args ok = ValidDecode();
  ASSERT_EQ(plx_decode_validate(&ok), PLX_OK);
  EXPECT_EQ(std::string(plx_last_error()), main_msg);
}

TEST(CApi, LastErrorConcurrentThreads) {
  // Two threads failing in lockstep each read back their own message.
  std::atomic<int> mismatches{0};
  auto worker = [&](int window) {
    for (int i = 0; i < 2000; ++i) {
      plx_decode_args a = ValidDecode();
      a.window = -window;
      plx_decode_validate(&a);
      const std::string want = "window=-" + std::to_string(window);
      if (std::string(plx_last_error()).find(want) == std::string::npos) ++mismatches;
    }
  };
  std::thread a(worker, 11), b(worker, 22);
  a.join();
  b.join();
  EXPECT_EQ(mismatches.load(), 0);
}

// ---- the C++ wrapper ------------------------------------------------------------------------

TEST(CppWrapper, ErrorsCarryStatusAndMessage) {
  plx_decode_args a = ValidDecode();
  a.k.dtype = PLX_FP16;
  try {
    parallax::ValidateDecode(a);
    FAIL() << "expected parallax::Error";
  } catch (const parallax::Error& e) {
    EXPECT_EQ(e.status(), PLX_ERROR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(e.what()).find("PLX_ERROR_INVALID_ARGUMENT"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("k: dtype=fp16"), std::string::npos) << e.what();
  }
  EXPECT_NO_THROW(parallax::ValidateDecode(ValidDecode()));
  EXPECT_NO_THROW(parallax::ValidatePrefill(ValidPackedPrefill()));
  EXPECT_THROW(parallax::MakeTensor(nullptr, PLX_BF16, {}), parallax::Error);
  EXPECT_THROW(parallax::MakeTensor(nullptr, PLX_BF16, {1, 2}, {1}), parallax::Error);
}

TEST(CppWrapper, ContextOwnership) {
  parallax::Context empty = parallax::Context::Adopt(nullptr);
  EXPECT_FALSE(empty);
  parallax::Context moved = std::move(empty);
  EXPECT_EQ(moved.get(), nullptr);
  EXPECT_THROW(moved.decode(ValidDecode()), parallax::Error);  // null handle: INVALID_ARGUMENT
  try {
    parallax::Context ctx;  // device 0
    EXPECT_TRUE(ctx);
    plx_device_info info = ctx.device_info();
    EXPECT_GE(info.cc_major, 7);
  } catch (const parallax::Error& e) {
    EXPECT_EQ(e.status(), PLX_ERROR_NO_DEVICE) << e.what();
  }
}

}  // namespace
