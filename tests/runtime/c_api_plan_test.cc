// CPU tests of decode's live-length hint (plx_decode_args.max_seqlen_k) and of the plan
// objects (parallax.h, "Plans") as far as they go without a device: the hint's translation and
// refusals, a run's arguments against its plan's, and the entry points' handle checks.
#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "c_api_fixtures.h"
#include "c_api_internal.h"
#include "parallax/parallax.h"

namespace {

using namespace parallax::capi_fixtures;  // NOLINT(build/namespaces): the tests are written in them

constexpr int kCapacity = 4 * 16;  // ValidPagedDecode: block table [B, 4] of 16-slot pages

plx_decode_args ContiguousWithSeqlens() {
  plx_decode_args a = ValidDecode();
  a.cache_seqlens = T(Fake(7), PLX_INT32, {kB});
  return a;
}

int PlannedLength(const plx_decode_args& a) {
  absl::StatusOr<parallax::DecodeCall> c = parallax::capi::TranslateDecodeCall(a);
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? c->params.seqlen : -100;
}

// ---- the hint -------------------------------------------------------------------------------

TEST(CApiSeqlenHint, UnsetPlansForTheCapacity) {
  plx_decode_args a;
  plx_decode_args_init(&a);
  EXPECT_EQ(a.max_seqlen_k, -1);
  EXPECT_EQ(PlannedLength(ValidPagedDecode()), kCapacity);
  EXPECT_EQ(PlannedLength(ValidDecode()), kL);
  EXPECT_EQ(PlannedLength(ContiguousWithSeqlens()), kL);
}

// The hint moves the plan's length and nothing else the kernel is given.
TEST(CApiSeqlenHint, BecomesTheLengthThePlanFollows) {
  for (const plx_decode_args& base : {ValidPagedDecode(), ContiguousWithSeqlens()}) {
    const int capacity = base.block_table.data ? kCapacity : kL;
    absl::StatusOr<parallax::DecodeCall> unhinted = parallax::capi::TranslateDecodeCall(base);
    ASSERT_TRUE(unhinted.ok()) << unhinted.status();
    for (int hint : {0, 1, 40, capacity}) {
      plx_decode_args a = base;
      a.max_seqlen_k = hint;
      absl::StatusOr<parallax::DecodeCall> c = parallax::capi::TranslateDecodeCall(a);
      ASSERT_TRUE(c.ok()) << hint << ": " << c.status();
      EXPECT_EQ(c->params.seqlen, hint);
      c->params.seqlen = unhinted->params.seqlen;
      EXPECT_TRUE(SameParams(c->params, unhinted->params)) << hint;
      EXPECT_EQ(plx_decode_validate(&a), PLX_OK) << plx_last_error();
    }
  }
  plx_decode_args a = ValidDecode();  // no lengths: the cache's length is the only true one
  a.max_seqlen_k = kL;
  EXPECT_EQ(PlannedLength(a), kL);
}

TEST(CApiSeqlenHint, Refusals) {
  for (int bad : {-2, std::numeric_limits<int32_t>::min()}) {
    plx_decode_args a = ValidPagedDecode();
    a.max_seqlen_k = bad;
    ExpectDecodeError(a, PLX_ERROR_INVALID_ARGUMENT,
                      {"plx_decode_validate: max_seqlen_k=", "must be -1 (plan for the block table's capacity) or 0..64"});
  }
  plx_decode_args a = ValidPagedDecode();
  a.max_seqlen_k = kCapacity + 1;
  ExpectDecodeError(a, PLX_ERROR_INVALID_ARGUMENT,
                    {"max_seqlen_k=65: exceeds the block table's capacity 64 (max_pages x page_size)"});
  a = ContiguousWithSeqlens();
  a.max_seqlen_k = kL + 1;
  ExpectDecodeError(a, PLX_ERROR_INVALID_ARGUMENT, {"max_seqlen_k=65: exceeds the cache's length 64 (k.shape[1])"});
  a = ValidDecode();
  a.max_seqlen_k = kL - 1;
  ExpectDecodeError(a, PLX_ERROR_INVALID_ARGUMENT,
                    {"max_seqlen_k=63: without cache_seqlens every sequence has the cache's 64 keys"});
}

// Every decode entry point translates through the hint, before it looks at the context.
TEST(CApiSeqlenHint, EveryEntryPointChecksIt) {
  plx_decode_args a = ValidPagedDecode();
  a.max_seqlen_k = 1000;
  size_t bytes = 0;
  plx_plan_info info;
  plx_plan_info_init(&info);
  plx_decode_plan* plan = nullptr;
  const std::vector<std::pair<const char*, std::function<plx_status()>>> calls = {
      {"plx_decode", [&] { return plx_decode(nullptr, &a, nullptr); }},
      {"plx_decode_workspace_size", [&] { return plx_decode_workspace_size(nullptr, &a, &bytes); }},
      {"plx_decode_plan_info", [&] { return plx_decode_plan_info(nullptr, &a, &info); }},
      {"plx_decode_plan_create", [&] { return plx_decode_plan_create(nullptr, &a, &plan); }},
  };
  for (const auto& [name, call] : calls) {
    EXPECT_EQ(call(), PLX_ERROR_INVALID_ARGUMENT) << name;
    EXPECT_EQ(std::string(plx_last_error()).rfind(std::string(name) + ": max_seqlen_k=1000: exceeds", 0), 0u)
        << plx_last_error();
  }
  EXPECT_EQ(plan, nullptr);
}

// ---- a run's arguments against its plan's ---------------------------------------------------

void ExpectMismatch(const plx_decode_args& plan, const plx_decode_args& run, const std::string& needle) {
  absl::Status s = parallax::capi::CheckRunMatchesPlan(plan, run);
  EXPECT_EQ(parallax::capi::ToPlxStatus(s), PLX_ERROR_INVALID_ARGUMENT) << needle << ": " << s;
  EXPECT_NE(std::string(s.message()).find(needle), std::string::npos) << "'" << needle << "' not in: " << s;
}

plx_decode_args HintedPaged() {
  plx_decode_args a = ValidPagedDecode();
  a.max_seqlen_k = 40;
  return a;
}

// Another layer: its own buffers and strides, scale, eps and workspace; the same problem.
TEST(CApiPlanMatch, WhatOnlyReachesTheKernelParametersMayDiffer) {
  const plx_decode_args plan = HintedPaged();
  plx_decode_args run = plan;
  EXPECT_TRUE(parallax::capi::CheckRunMatchesPlan(plan, run).ok());
  run.q = T(Fake(11), PLX_BF16, {kB, kHq, kD}, {2 * kHq * kD, kD, 1});  // a padded batch stride
  run.k = T(Fake(13), PLX_BF16, {16, 16, kHkv, kD});
  run.v = T(Fake(14), PLX_BF16, {16, 16, kHkv, kD}, {16 * kHkv * kD, kD, 16 * kD, 1});  // head-major pages
  run.block_table = T(Fake(16), PLX_INT32, {kB, 4}, {8, 1});
  run.qk_scale = 0.5f;
  run.eps = 1e-3f;
  run.workspace = Fake(20);
  run.workspace_bytes = 4096;
  std::string key = "";  // "" and NULL both mean the runtime's choice
  run.variant = key.c_str();
  absl::Status s = parallax::capi::CheckRunMatchesPlan(plan, run);
  EXPECT_TRUE(s.ok()) << s;
}

TEST(CApiPlanMatch, EveryDifferenceIsNamed) {
  const plx_decode_args plan = HintedPaged();
  struct Case {
    std::function<void(plx_decode_args&)> change;
    const char* needle;
  };
  const std::string key = DefaultKey(parallax::Mode::kDecode, parallax::DType::kBF16);
  const std::vector<Case> cases = {
      {[](auto& a) { a.q = T(Fake(1), PLX_BF16, {kB + 1, kHq, kD}); }, "q: shape [3, 8, 128] differs from the plan's [2, 8, 128]"},
      {[](auto& a) { a.q = T(Fake(1), PLX_BF16, {kB, 1, kHq, kD}); }, "q: shape [2, 1, 8, 128] differs from the plan's [2, 8, 128]"},
      {[](auto& a) { a.r.data = nullptr; }, "r: absent, but the plan was made with it"},
      {[](auto& a) { a.k = T(Fake(3), PLX_BF16, {32, 16, kHkv, kD}); }, "k: shape [32, 16, 2, 128] differs from the plan's [16, 16, 2, 128]"},
      {[](auto& a) { a.v.dtype = PLX_FP16; }, "v: dtype=fp16 differs from the plan's bf16"},
      {[](auto& a) { a.out = T(Fake(5), PLX_BF16, {kB, kHq, 64}); }, "out: shape"},
      {[](auto& a) { a.block_table = T(Fake(6), PLX_INT32, {kB, 8}); }, "block_table: shape [2, 8] differs from the plan's [2, 4]"},
      {[](auto& a) { a.cache_seqlens.data = nullptr; }, "cache_seqlens: absent, but the plan was made with it"},
      {[](auto& a) { a.window = 5; }, "window=5 differs from the plan's 0"},
      {[](auto& a) { a.window_left = 4; a.window_right = 0; }, "window_left=4 differs from the plan's -2147483648"},
      {[](auto& a) { a.num_splits = 3; }, "num_splits=3 differs from the plan's 0"},
      {[](auto& a) { a.max_seqlen_k = -1; }, "max_seqlen_k=-1 differs from the plan's 40"},
      {[](auto& a) { a.affine = PLX_AFFINE_AMPLIFIED; }, "affine=1 differs from the plan's 0"},
      {[&](auto& a) { a.variant = key.c_str(); }, "variant: 'decode-bf16-d128-h8x2-contig-nowin"},
  };
  for (const Case& c : cases) {
    plx_decode_args run = plan;
    c.change(run);
    ExpectMismatch(plan, run, c.needle);
  }
  plx_decode_args unhinted = ValidDecode();  // and the other way round: given at the run only
  plx_decode_args run = unhinted;
  run.cache_seqlens = T(Fake(7), PLX_INT32, {kB});
  ExpectMismatch(unhinted, run, "cache_seqlens: given, but the plan was made without it");
}

TEST(CApiPlanMatch, Prefill) {
  const plx_prefill_args plan = ValidPackedPrefill();
  plx_prefill_args run = plan;
  run.q = T(Fake(21), PLX_BF16, {90, kHq, kD}, {2 * kHq * kD, kD, 1});
  run.qk_scale = 0.25f;
  EXPECT_TRUE(parallax::capi::CheckRunMatchesPlan(plan, run).ok());
  auto expect = [&](const std::function<void(plx_prefill_args&)>& change, const char* needle) {
    plx_prefill_args r = plan;
    change(r);
    absl::Status s = parallax::capi::CheckRunMatchesPlan(plan, r);
    EXPECT_EQ(parallax::capi::ToPlxStatus(s), PLX_ERROR_INVALID_ARGUMENT) << needle;
    EXPECT_NE(std::string(s.message()).find(needle), std::string::npos) << "'" << needle << "' not in: " << s;
  };
  expect([](auto& a) { a.max_seqlen_q = 61; }, "max_seqlen_q=61 differs from the plan's 60");
  expect([](auto& a) { a.max_seqlen_k = 71; }, "max_seqlen_k=71 differs from the plan's 70");
  expect([](auto& a) { a.cu_seqlens_k = T(Fake(7), PLX_INT32, {4}); }, "cu_seqlens_k: shape [4] differs");
  expect([](auto& a) { a.lse = T(Fake(8), PLX_FLOAT32, {kHq, 90}); }, "lse: given, but the plan was made without it");
  expect([](auto& a) { a.k = T(Fake(3), PLX_BF16, {121, kHkv, kD}); }, "k: shape [121, 2, 128] differs");
}

// ---- the entry points without a device ------------------------------------------------------

TEST(CApiPlan, HandlesAndOutputsAreChecked) {
  const plx_decode_args d = HintedPaged();
  plx_decode_plan* dp = reinterpret_cast<plx_decode_plan*>(0x1);
  EXPECT_EQ(plx_decode_plan_create(nullptr, &d, nullptr), PLX_ERROR_INVALID_ARGUMENT);
  EXPECT_STREQ(plx_last_error(), "plx_decode_plan_create: plan: output pointer is NULL");
  EXPECT_EQ(plx_decode_plan_create(nullptr, nullptr, &dp), PLX_ERROR_INVALID_ARGUMENT);
  EXPECT_STREQ(plx_last_error(), "plx_decode_plan_create: args is NULL");
  EXPECT_EQ(dp, nullptr);
  dp = reinterpret_cast<plx_decode_plan*>(0x1);
  EXPECT_EQ(plx_decode_plan_create(nullptr, &d, &dp), PLX_ERROR_INVALID_ARGUMENT);
  EXPECT_STREQ(plx_last_error(), "plx_decode_plan_create: ctx is NULL");  // valid arguments get this far
  EXPECT_EQ(dp, nullptr);
  plx_decode_args bad = d;
  bad.window = -3;  // argument errors come first
  EXPECT_EQ(plx_decode_plan_create(nullptr, &bad, &dp), PLX_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(std::string(plx_last_error()).rfind("plx_decode_plan_create: window=-3", 0), 0u) << plx_last_error();
  EXPECT_EQ(plx_decode_plan_run(nullptr, nullptr, &d, nullptr), PLX_ERROR_INVALID_ARGUMENT);
  EXPECT_STREQ(plx_last_error(), "plx_decode_plan_run: plan is NULL");
  plx_plan_info info;
  plx_plan_info_init(&info);
  EXPECT_EQ(plx_decode_plan_get_info(nullptr, &info), PLX_ERROR_INVALID_ARGUMENT);
  EXPECT_STREQ(plx_last_error(), "plx_decode_plan_get_info: plan is NULL");
  plx_decode_plan_destroy(nullptr);  // a no-op

  const plx_prefill_args p = ValidPrefill();
  plx_prefill_plan* pp = reinterpret_cast<plx_prefill_plan*>(0x1);
  EXPECT_EQ(plx_prefill_plan_create(nullptr, &p, nullptr), PLX_ERROR_INVALID_ARGUMENT);
  EXPECT_STREQ(plx_last_error(), "plx_prefill_plan_create: plan: output pointer is NULL");
  EXPECT_EQ(plx_prefill_plan_create(nullptr, &p, &pp), PLX_ERROR_INVALID_ARGUMENT);
  EXPECT_STREQ(plx_last_error(), "plx_prefill_plan_create: ctx is NULL");
  EXPECT_EQ(pp, nullptr);
  EXPECT_EQ(plx_prefill_plan_run(nullptr, nullptr, &p, nullptr), PLX_ERROR_INVALID_ARGUMENT);
  EXPECT_STREQ(plx_last_error(), "plx_prefill_plan_run: plan is NULL");
  EXPECT_EQ(plx_prefill_plan_get_info(nullptr, &info), PLX_ERROR_INVALID_ARGUMENT);
  EXPECT_STREQ(plx_last_error(), "plx_prefill_plan_get_info: plan is NULL");
  plx_prefill_plan_destroy(nullptr);
}

// The backward's plan info (which variant plx_prefill_backward would run, and why): the
// arguments first, then the context; the tuned choice itself is backward_plan_test.cc's.
TEST(CApiPlan, BackwardPlanInfoChecksArgumentsThenContext) {
  plx_prefill_backward_args a;
  plx_prefill_backward_args_init(&a);
  a.q = a.out = a.dout = a.dq = T(Fake(1), PLX_BF16, {kB, 16, kHq, kD});
  a.k = a.v = a.dk = a.dv = T(Fake(3), PLX_BF16, {kB, 24, kHkv, kD});
  a.lse = T(Fake(8), PLX_FLOAT32, {kB, kHq, 16});
  plx_plan_info info;
  plx_plan_info_init(&info);
  EXPECT_EQ(plx_prefill_backward_plan_info(nullptr, &a, &info), PLX_ERROR_INVALID_ARGUMENT);
  EXPECT_STREQ(plx_last_error(), "plx_prefill_backward_plan_info: ctx is NULL");  // valid arguments get this far
  EXPECT_EQ(plx_prefill_backward_plan_info(nullptr, &a, nullptr), PLX_ERROR_INVALID_ARGUMENT);
  EXPECT_STREQ(plx_last_error(), "plx_prefill_backward_plan_info: info: output pointer is NULL");
  EXPECT_EQ(plx_prefill_backward_plan_info(nullptr, nullptr, &info), PLX_ERROR_INVALID_ARGUMENT);
  EXPECT_STREQ(plx_last_error(), "plx_prefill_backward_plan_info: args is NULL");
  plx_prefill_backward_args bad = a;
  bad.variant = "bwd-bf16-d64-h8x2-contig-nowin.none-plain.mma-m64-n64-w4-s1";  // another head_dim
  EXPECT_NE(plx_prefill_backward_plan_info(nullptr, &bad, &info), PLX_OK);
  EXPECT_NE(std::string(plx_last_error()).find("variant_key: "), std::string::npos) << plx_last_error();
  bad = a;
  bad.dk.data = nullptr;
  EXPECT_EQ(plx_prefill_backward_plan_info(nullptr, &bad, &info), PLX_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(plx_last_error()).find("dk: data is NULL"), std::string::npos) << plx_last_error();
  plx_plan_info old = info;
  old.struct_size = 3;
  EXPECT_EQ(plx_prefill_backward_plan_info(nullptr, &a, &old), PLX_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(plx_last_error()).find("struct_size=3"), std::string::npos) << plx_last_error();
}

// Multi-token decode plans as extend: its arguments are checked the same way first.
TEST(CApiPlan, MultiTokenDecodeIsCheckedAsExtend) {
  plx_decode_args a = ValidPagedDecode();
  a.q = T(Fake(1), PLX_BF16, {kB, 3, kHq, kD});
  a.r = T(Fake(2), PLX_BF16, {kB, 3, kHq, kD});
  a.out = T(Fake(5), PLX_BF16, {kB, 3, kHq, kD});
  plx_decode_plan* dp = nullptr;
  EXPECT_EQ(plx_decode_plan_create(nullptr, &a, &dp), PLX_ERROR_INVALID_ARGUMENT);
  EXPECT_STREQ(plx_last_error(), "plx_decode_plan_create: ctx is NULL");
  a.num_splits = 2;
  EXPECT_EQ(plx_decode_plan_create(nullptr, &a, &dp), PLX_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(std::string(plx_last_error()).rfind("plx_decode_plan_create: num_splits=2", 0), 0u) << plx_last_error();
  EXPECT_EQ(dp, nullptr);
}

TEST(CppWrapper, PlansThrowTheLibrarysError) {
  parallax::Context none = parallax::Context::Adopt(nullptr);
  try {
    parallax::PlannedDecode plan(none, HintedPaged());
    ADD_FAILURE() << "a plan without a context";
  } catch (const parallax::Error& e) {
    EXPECT_EQ(e.status(), PLX_ERROR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(e.what()).find("plx_decode_plan_create: ctx is NULL"), std::string::npos) << e.what();
  }
  EXPECT_THROW(parallax::PlannedPrefill(none, ValidPrefill()), parallax::Error);
}

}  // namespace
