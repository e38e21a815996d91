// Decode plans through the C API (parallax.h, "Plans") on the GPU (label: gpu): a plan made
// once runs several layers exactly as plx_decode runs each, and the live-length hint
// (max_seqlen_k) moves the plan off the table's capacity without dropping a key.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <functional>
#include <memory>
#include <random>
#include <vector>

#include "gpu_harness.h"
#include "parallax/parallax.h"
#include "parallax/parallax.hpp"
#include "parallax/runtime/cuda_driver.h"

namespace parallax::testing {
namespace {

constexpr int64_t kHq = 8, kHkv = 2, kD = 128, kPage = 16;
constexpr uint16_t kPoison = 0xffff;  // a NaN in bf16

// One paged cache layout: sequence b owns pages [b * per_seq, (b + 1) * per_seq).
struct PagedBatch {
  int64_t batch, per_seq, num_pages;
  std::vector<int> lens;
  std::unique_ptr<DeviceBuffer> q, r, table, seqlens;
};

PagedBatch MakeBatch(std::mt19937_64& rng, std::vector<int> lens, int64_t per_seq) {
  PagedBatch p;
  p.batch = static_cast<int64_t>(lens.size());
  p.per_seq = per_seq;
  p.num_pages = p.batch * per_seq;
  p.lens = std::move(lens);
  p.q = RandomHalves(rng, p.batch * kHq * kD, DType::kBF16);
  p.r = RandomHalves(rng, p.batch * kHq * kD, DType::kBF16);
  std::vector<int> table(p.batch * per_seq);
  for (size_t i = 0; i < table.size(); ++i) table[i] = static_cast<int>(i);
  p.table = std::make_unique<DeviceBuffer>(table.size() * 4);
  p.table->Upload(table.data(), table.size() * 4);
  p.seqlens = std::make_unique<DeviceBuffer>(p.lens.size() * 4);
  p.seqlens->Upload(p.lens.data(), p.lens.size() * 4);
  return p;
}

plx_decode_args Args(const PagedBatch& p, const DeviceBuffer& k, const DeviceBuffer& v, const DeviceBuffer& out,
                     int32_t hint) {
  plx_decode_args a = MakeDecodeArgs();
  a.q = MakeTensor(p.q->get(), PLX_BF16, {p.batch, kHq, kD});
  a.r = MakeTensor(p.r->get(), PLX_BF16, {p.batch, kHq, kD});
  a.k = MakeTensor(k.get(), PLX_BF16, {p.num_pages, kPage, kHkv, kD});
  a.v = MakeTensor(v.get(), PLX_BF16, {p.num_pages, kPage, kHkv, kD});
  a.out = MakeTensor(out.get(), PLX_BF16, {p.batch, kHq, kD});
  a.block_table = MakeTensor(p.table->get(), PLX_INT32, {p.batch, p.per_seq});
  a.cache_seqlens = MakeTensor(p.seqlens->get(), PLX_INT32, {p.batch});
  a.max_seqlen_k = hint;
  return a;
}

class DecodePlanGpu : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (SharedRuntime(&why) == nullptr) GTEST_SKIP() << "no GPU: " << why;
    ASSERT_EQ(plx_context_create(nullptr, &ctx_), PLX_OK) << plx_last_error();
  }
  void TearDown() override { plx_context_destroy(ctx_); }

  // out poisoned, launch on the legacy stream, synchronized; every element must be written.
  std::vector<uint16_t> Launch(const std::function<plx_status()>& launch, DeviceBuffer& out, size_t n) {
    out.Fill16(kPoison, n);
    EXPECT_EQ(launch(), PLX_OK) << plx_last_error();
    EXPECT_EQ((*cu::Driver())->cuCtxSynchronize(), CUDA_SUCCESS);
    std::vector<uint16_t> h(n);
    out.Download(h.data(), n * 2);
    EXPECT_EQ(std::count(h.begin(), h.end(), kPoison), 0) << "elements left unwritten";
    return h;
  }

  PlanInfo Info(const plx_decode_args& a) {
    plx_plan_info i;
    plx_plan_info_init(&i);
    EXPECT_EQ(plx_decode_plan_info(ctx_, &a, &i), PLX_OK) << plx_last_error();
    return PlanInfo::From(i);
  }

  plx_context* ctx_ = nullptr;
};

double RelError(const std::vector<uint16_t>& got, const std::vector<uint16_t>& want) {
  std::vector<double> g(got.size()), w(want.size());
  for (size_t i = 0; i < got.size(); ++i) g[i] = FromHalfBits(got[i], DType::kBF16);
  for (size_t i = 0; i < want.size(); ++i) w[i] = FromHalfBits(want[i], DType::kBF16);
  return ref::Compare(g, w).rel_frobenius;
}

// One plan, made with the hint and no buffers of its own, runs two layers (different K/V
// pools, same shapes); each output is plx_decode's to the bit, and the plan reports what
// plx_decode_plan_info does.
TEST_F(DecodePlanGpu, OnePlanRunsTwoLayersAsPlxDecode) {
  std::mt19937_64 rng(77);
  const PagedBatch p = MakeBatch(rng, {100, 700, 33}, 64);  // capacity 1024 keys
  const size_t pool = p.num_pages * kPage * kHkv * kD, rows = p.batch * kHq * kD;
  std::unique_ptr<DeviceBuffer> kv[2][2];
  for (auto& layer : kv)
    for (auto& t : layer) t = RandomHalves(rng, pool, DType::kBF16);
  DeviceBuffer out(rows * 2);

  plx_decode_plan* plan = nullptr;
  const plx_decode_args planned = Args(p, *kv[0][0], *kv[0][1], out, 700);
  ASSERT_EQ(plx_decode_plan_create(ctx_, &planned, &plan), PLX_OK) << plx_last_error();
  plx_plan_info got;
  plx_plan_info_init(&got);
  ASSERT_EQ(plx_decode_plan_get_info(plan, &got), PLX_OK) << plx_last_error();
  const PlanInfo info = PlanInfo::From(got), want = Info(planned);
  EXPECT_EQ(info.variant, want.variant);
  EXPECT_EQ(info.choice, want.choice);
  EXPECT_EQ(info.num_splits, want.num_splits);
  EXPECT_EQ(info.workspace_bytes, want.workspace_bytes);

  std::vector<uint16_t> first;
  for (auto& layer : kv) {
    const plx_decode_args a = Args(p, *layer[0], *layer[1], out, 700);
    const std::vector<uint16_t> ran = Launch([&] { return plx_decode_plan_run(ctx_, plan, &a, nullptr); }, out, rows);
    const std::vector<uint16_t> once = Launch([&] { return plx_decode(ctx_, &a, nullptr); }, out, rows);
    EXPECT_EQ(std::memcmp(ran.data(), once.data(), rows * 2), 0) << "plan run differs from plx_decode";
    if (first.empty()) {
      first = ran;
    } else {
      EXPECT_NE(std::memcmp(ran.data(), first.data(), rows * 2), 0) << "the layers' K/V made no difference";
    }
  }

  // A run whose problem is not the plan's is refused, naming the field.
  plx_decode_args other = Args(p, *kv[1][0], *kv[1][1], out, 701);
  EXPECT_EQ(plx_decode_plan_run(ctx_, plan, &other, nullptr), PLX_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(plx_last_error()).find("max_seqlen_k=701 differs from the plan's 700"), std::string::npos)
      << plx_last_error();
  other = Args(p, *kv[1][0], *kv[1][1], out, 700);
  other.r.data = nullptr;
  EXPECT_EQ(plx_decode_plan_run(ctx_, plan, &other, nullptr), PLX_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(plx_last_error()).find("r: absent"), std::string::npos) << plx_last_error();
  plx_decode_plan_destroy(plan);
}

// A table sized for 32k keys with 50 and 64 live: planned from the capacity the call splits
// the keys many ways (and needs a workspace); from the hint, it takes one split. The results
// agree to rounding, and a hint below the live lengths drops no key: with one split either
// way the kernel is the same launch, so the outputs are bit-identical.
TEST_F(DecodePlanGpu, TheHintFollowsTheLiveBatchNotTheCapacity) {
  std::mt19937_64 rng(78);
  const PagedBatch p = MakeBatch(rng, {50, 64}, 2048);
  const size_t pool = p.num_pages * kPage * kHkv * kD, rows = p.batch * kHq * kD;
  auto k = RandomHalves(rng, pool, DType::kBF16), v = RandomHalves(rng, pool, DType::kBF16);
  DeviceBuffer out(rows * 2);

  const plx_decode_args capacity = Args(p, *k, *v, out, -1), live = Args(p, *k, *v, out, 64),
                        short_hint = Args(p, *k, *v, out, 10);
  const PlanInfo from_capacity = Info(capacity), from_live = Info(live);
  EXPECT_GT(from_capacity.num_splits, 1) << from_capacity.variant;
  EXPECT_GT(from_capacity.workspace_bytes, 0u);
  EXPECT_EQ(from_live.num_splits, 1) << from_live.variant;
  EXPECT_EQ(from_live.workspace_bytes, 0u);
  std::printf("[plan] capacity 32768: %s splits=%d; hint 64: %s splits=%d\n", from_capacity.variant.c_str(),
              from_capacity.num_splits, from_live.variant.c_str(), from_live.num_splits);

  std::vector<std::vector<uint16_t>> outs;
  for (const plx_decode_args* a : {&capacity, &live, &short_hint}) {
    plx_decode_plan* plan = nullptr;
    ASSERT_EQ(plx_decode_plan_create(ctx_, a, &plan), PLX_OK) << plx_last_error();
    outs.push_back(Launch([&] { return plx_decode_plan_run(ctx_, plan, a, nullptr); }, out, rows));
    plx_decode_plan_destroy(plan);
  }
  EXPECT_LE(RelError(outs[1], outs[0]), 4e-3);
  const PlanInfo from_short = Info(short_hint);
  ASSERT_EQ(from_short.num_splits, 1);
  if (from_short.variant == from_live.variant) {  // a tuned DB could pick per bucket
    EXPECT_EQ(std::memcmp(outs[2].data(), outs[1].data(), rows * 2), 0) << "a short hint changed the result";
  } else {
    EXPECT_LE(RelError(outs[2], outs[1]), 4e-3);
  }
}

// A split plan runs eagerly as its one-launch twin (the fused merge) and under stream capture
// as planned. What a graph replays must be the planned kernels: bit-identical to an eager run
// of a context with the twin turned off (PARALLAX_EAGER_ONE_LAUNCH=0); the eager run agrees to
// rounding.
TEST_F(DecodePlanGpu, EagerRunsTheOneLaunchTwinCaptureRunsThePlan) {
  std::mt19937_64 rng(79);
  const PagedBatch p = MakeBatch(rng, {700, 1000}, 64);
  const size_t pool = p.num_pages * kPage * kHkv * kD, rows = p.batch * kHq * kD;
  auto k = RandomHalves(rng, pool, DType::kBF16), v = RandomHalves(rng, pool, DType::kBF16);
  DeviceBuffer out(rows * 2);
  const plx_decode_args a = Args(p, *k, *v, out, 1000);
  const PlanInfo info = Info(a);
  if (info.num_splits < 2 || info.variant.find("-fused") != std::string::npos)
    GTEST_SKIP() << "this shape plans " << info.variant << " with " << info.num_splits << " split(s): no twin";

  setenv("PARALLAX_EAGER_ONE_LAUNCH", "0", 1);
  plx_context* planned_ctx = nullptr;
  const plx_status made = plx_context_create(nullptr, &planned_ctx);
  unsetenv("PARALLAX_EAGER_ONE_LAUNCH");
  ASSERT_EQ(made, PLX_OK) << plx_last_error();
  plx_decode_plan *plan = nullptr, *plain = nullptr;
  ASSERT_EQ(plx_decode_plan_create(ctx_, &a, &plan), PLX_OK) << plx_last_error();
  ASSERT_EQ(plx_decode_plan_create(planned_ctx, &a, &plain), PLX_OK) << plx_last_error();

  const std::vector<uint16_t> eager = Launch([&] { return plx_decode_plan_run(ctx_, plan, &a, nullptr); }, out, rows);
  const std::vector<uint16_t> as_planned =
      Launch([&] { return plx_decode_plan_run(planned_ctx, plain, &a, nullptr); }, out, rows);

  const cu::Api* d = *cu::Driver();
  CUstream s = nullptr;
  ASSERT_EQ(d->cuStreamCreate(&s, CU_STREAM_NON_BLOCKING), CUDA_SUCCESS);
  CUgraph g = nullptr;
  CUgraphExec ge = nullptr;
  ASSERT_EQ(d->cuStreamBeginCapture_v2(s, CU_STREAM_CAPTURE_MODE_THREAD_LOCAL), CUDA_SUCCESS);
  const plx_status captured = plx_decode_plan_run(ctx_, plan, &a, s);
  ASSERT_EQ(d->cuStreamEndCapture(s, &g), CUDA_SUCCESS);
  ASSERT_EQ(captured, PLX_OK) << plx_last_error();
  ASSERT_EQ(d->cuGraphInstantiateWithFlags(&ge, g, 0), CUDA_SUCCESS);
  const std::vector<uint16_t> replayed = Launch(
      [&] {
        const bool ok = d->cuGraphLaunch(ge, s) == CUDA_SUCCESS && d->cuStreamSynchronize(s) == CUDA_SUCCESS;
        return ok ? PLX_OK : PLX_ERROR_CUDA;
      },
      out, rows);
  EXPECT_EQ(std::memcmp(replayed.data(), as_planned.data(), rows * 2), 0)
      << "the captured run is not the planned variant's";
  EXPECT_LE(RelError(eager, as_planned), 4e-3);
  std::printf("[eager] %s splits=%d: eager vs planned rel %.2e\n", info.variant.c_str(), info.num_splits,
              RelError(eager, as_planned));
  d->cuGraphExecDestroy(ge);
  d->cuGraphDestroy(g);
  d->cuStreamDestroy_v2(s);
  plx_decode_plan_destroy(plain);
  plx_decode_plan_destroy(plan);
  plx_context_destroy(planned_ctx);
}

}  // namespace
}  // namespace parallax::testing
