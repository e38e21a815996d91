// Host cost of decode plans (issue #13: "the plan is cheap, <= 5 us of host time per call when
// cached"): the time the calling thread spends in each C API call of an engine's decode step,
// for a paged batch whose table is sized far beyond its live lengths. Each call is timed on
// its own (steady_clock); the kernel is compiled and the choice memoized by a warm-up first,
// and launches are drained between timed runs (untimed) so a full launch queue never blocks
// one. Prints a line per call (median, p90, mean in microseconds) and one JSON line.
//
// Usage: plx_plan_host_cost [--batch 64] [--hq 32] [--hkv 8] [--d 128] [--page 16]
//                           [--capacity 32768] [--live 1024] [--calls 10000]
// Exit 0 without a CUDA device (says so), 1 on a failed call.
#include <cuda.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "parallax/parallax.h"

namespace {

struct Options {
  int batch = 64, hq = 32, hkv = 8, d = 128, page = 16, capacity = 32768, live = 1024, calls = 10000;
};

bool Parse(int argc, char** argv, Options* o) {
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    int* field = flag == "--batch"      ? &o->batch
                 : flag == "--hq"       ? &o->hq
                 : flag == "--hkv"      ? &o->hkv
                 : flag == "--d"        ? &o->d
                 : flag == "--page"     ? &o->page
                 : flag == "--capacity" ? &o->capacity
                 : flag == "--live"     ? &o->live
                 : flag == "--calls"    ? &o->calls
                                        : nullptr;
    if (field == nullptr || i + 1 >= argc) {
      std::fprintf(stderr, "plx_plan_host_cost: unknown flag or missing value: %s\n", flag.c_str());
      return false;
    }
    *field = std::atoi(argv[++i]);
  }
  return o->batch > 0 && o->page > 0 && o->live > 0 && o->capacity >= o->live && o->calls > 0;
}

bool Ok(plx_status s, const char* what) {
  if (s == PLX_OK) return true;
  std::fprintf(stderr, "plx_plan_host_cost: %s: %s: %s\n", what, plx_status_string(s), plx_last_error());
  return false;
}

void* DeviceAlloc(size_t bytes) {
  void* p = nullptr;
  if (cudaMalloc(&p, bytes) != cudaSuccess) {
    std::fprintf(stderr, "plx_plan_host_cost: cudaMalloc(%zu) failed\n", bytes);
    std::exit(1);
  }
  cudaMemset(p, 0, bytes);
  return p;
}

plx_tensor Tensor(void* data, plx_dtype dtype, std::initializer_list<int64_t> shape) {
  plx_tensor t;
  std::memset(&t, 0, sizeof(t));  // zero strides: contiguous
  t.data = data;
  t.dtype = dtype;
  t.ndim = static_cast<int32_t>(shape.size());
  int i = 0;
  for (int64_t s : shape) t.shape[i++] = s;
  return t;
}

struct Stats {
  double median, p90, mean;
};

// `calls` timed calls of f; between calls, `between` (untimed) every `drain_every` calls.
Stats Time(int calls, const std::function<bool()>& f, const std::function<void()>& between = {},
           int drain_every = 64) {
  std::vector<double> us;
  us.reserve(calls);
  for (int i = 0; i < calls; ++i) {
    if (between && i % drain_every == 0) between();
    const auto t0 = std::chrono::steady_clock::now();
    const bool ok = f();
    const auto t1 = std::chrono::steady_clock::now();
    if (!ok) std::exit(1);
    us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
  }
  double sum = 0;
  for (double u : us) sum += u;
  std::sort(us.begin(), us.end());
  return {us[us.size() / 2], us[us.size() * 9 / 10], sum / us.size()};
}

void Print(const char* what, const Stats& s) {
  std::printf("%-34s median %7.2f us   p90 %7.2f us   mean %7.2f us\n", what, s.median, s.p90, s.mean);
}

// A bare launch on the same stream: an empty kernel taking a 512-byte parameter block (about
// what a generated kernel takes), loaded from PTX through the driver entry points cudart
// hands out (no libcuda link). What a plan run costs beyond this is the C API's own time.
struct BareLaunch {
  CUfunction fn = nullptr;
  decltype(&cuLaunchKernel) launch = nullptr;
  unsigned char params[512] = {};

  bool Init() {
    static const char kPtx[] =
        ".version 7.0\n.target sm_80\n.address_size 64\n"
        ".visible .entry plx_bare(.param .align 8 .b8 p[512]) { ret; }\n";
    decltype(&cuModuleLoadData) load = nullptr;
    decltype(&cuModuleGetFunction) get = nullptr;
    cudaDriverEntryPointQueryResult q;
    if (cudaGetDriverEntryPointByVersion("cuModuleLoadData", reinterpret_cast<void**>(&load), 12000,
                                         cudaEnableDefault, &q) != cudaSuccess ||
        cudaGetDriverEntryPointByVersion("cuModuleGetFunction", reinterpret_cast<void**>(&get), 12000,
                                         cudaEnableDefault, &q) != cudaSuccess ||
        cudaGetDriverEntryPointByVersion("cuLaunchKernel", reinterpret_cast<void**>(&launch), 12000,
                                         cudaEnableDefault, &q) != cudaSuccess)
      return false;
    CUmodule mod;
    return load(&mod, kPtx) == CUDA_SUCCESS && get(&fn, mod, "plx_bare") == CUDA_SUCCESS;
  }
  bool Run(cudaStream_t stream) {
    void* extra[] = {CU_LAUNCH_PARAM_BUFFER_POINTER, params, CU_LAUNCH_PARAM_BUFFER_SIZE, &size,
                     CU_LAUNCH_PARAM_END};
    return launch(fn, 1, 1, 1, 32, 1, 1, 0, reinterpret_cast<CUstream>(stream), nullptr, extra) == CUDA_SUCCESS;
  }
  size_t size = sizeof(params);
};

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (!Parse(argc, argv, &o)) return 2;
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // lines reach a redirected log even if a later call aborts
  plx_context* ctx = nullptr;
  const plx_status created = plx_context_create(nullptr, &ctx);
  if (created == PLX_ERROR_NO_DEVICE) {
    std::printf("plx_plan_host_cost: skipped, no CUDA device (%s)\n", plx_last_error());
    return 0;
  }
  if (!Ok(created, "plx_context_create")) return 1;
  plx_device_info dev;
  plx_device_info_init(&dev);
  if (!Ok(plx_context_get_device_info(ctx, &dev), "plx_context_get_device_info")) return 1;

  // The pool holds the live pages only; table slots past a sequence's length name page 0.
  const int max_pages = (o.capacity + o.page - 1) / o.page, live_pages = (o.live + o.page - 1) / o.page;
  const int64_t num_pages = int64_t{o.batch} * live_pages;
  std::vector<int> table(size_t(o.batch) * max_pages, 0), lens(o.batch);
  std::mt19937 rng(1);
  int longest = 0;
  for (int b = 0; b < o.batch; ++b) {
    lens[b] = std::uniform_int_distribution<int>(o.live / 2 + 1, o.live)(rng);
    longest = std::max(longest, lens[b]);
    for (int p = 0; p < live_pages; ++p) table[size_t(b) * max_pages + p] = b * live_pages + p;
  }
  const size_t row = size_t(o.batch) * o.hq * o.d * 2, pool = size_t(num_pages) * o.page * o.hkv * o.d * 2;
  void* q = DeviceAlloc(row);
  void* r = DeviceAlloc(row);
  void* out = DeviceAlloc(row);
  void* k[2] = {DeviceAlloc(pool), DeviceAlloc(pool)};  // two layers
  void* v[2] = {DeviceAlloc(pool), DeviceAlloc(pool)};
  void* bt = DeviceAlloc(table.size() * 4);
  void* sl = DeviceAlloc(lens.size() * 4);
  cudaMemcpy(bt, table.data(), table.size() * 4, cudaMemcpyHostToDevice);
  cudaMemcpy(sl, lens.data(), lens.size() * 4, cudaMemcpyHostToDevice);
  cudaStream_t stream;
  cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);

  auto args_for = [&](int layer, int32_t hint) {
    plx_decode_args a;
    plx_decode_args_init(&a);
    a.q = Tensor(q, PLX_BF16, {o.batch, o.hq, o.d});
    a.r = Tensor(r, PLX_BF16, {o.batch, o.hq, o.d});
    a.k = Tensor(k[layer], PLX_BF16, {num_pages, o.page, o.hkv, o.d});
    a.v = Tensor(v[layer], PLX_BF16, {num_pages, o.page, o.hkv, o.d});
    a.out = Tensor(out, PLX_BF16, {o.batch, o.hq, o.d});
    a.block_table = Tensor(bt, PLX_INT32, {o.batch, max_pages});
    a.cache_seqlens = Tensor(sl, PLX_INT32, {o.batch});
    a.max_seqlen_k = hint;
    return a;
  };
  const plx_decode_args hinted = args_for(0, longest), layer1 = args_for(1, longest);
  const plx_decode_args unhinted = args_for(0, -1);
  plx_plan_info with_hint, from_capacity;
  plx_plan_info_init(&with_hint);
  plx_plan_info_init(&from_capacity);
  if (!Ok(plx_decode_plan_info(ctx, &hinted, &with_hint), "plx_decode_plan_info") ||
      !Ok(plx_decode_plan_info(ctx, &unhinted, &from_capacity), "plx_decode_plan_info"))
    return 1;
  std::printf("%s: B=%d Hq=%d Hkv=%d D=%d page=%d capacity=%d live<=%d (hint %d), %d calls each\n", dev.name,
              o.batch, o.hq, o.hkv, o.d, o.page, max_pages * o.page, o.live, longest, o.calls);
  std::printf("  hinted plan:   %s splits=%d workspace=%zu\n", with_hint.variant, with_hint.num_splits,
              with_hint.workspace_bytes);
  std::printf("  capacity plan: %s splits=%d workspace=%zu\n", from_capacity.variant, from_capacity.num_splits,
              from_capacity.workspace_bytes);

  plx_decode_plan* plan = nullptr;
  auto drain = [&] { cudaStreamSynchronize(stream); };
  for (int i = 0; i < 100; ++i) {  // warm: compile, load, memoize, reserve
    if (!Ok(plx_decode_plan_create(ctx, &hinted, &plan), "plx_decode_plan_create")) return 1;
    if (!Ok(plx_decode_plan_run(ctx, plan, &hinted, stream), "plx_decode_plan_run")) return 1;
    if (!Ok(plx_decode(ctx, &hinted, stream), "plx_decode")) return 1;
    plx_decode_plan_destroy(std::exchange(plan, nullptr));  // the timed loops below destroy what `plan` holds
  }
  drain();

  const Stats validate = Time(o.calls, [&] { return Ok(plx_decode_validate(&hinted), "plx_decode_validate"); });
  // An engine's step: one plan made (timed alone), then later freed (untimed here).
  const Stats create = Time(
      o.calls, [&] { return Ok(plx_decode_plan_create(ctx, &hinted, &plan), "plx_decode_plan_create"); },
      [&] { plx_decode_plan_destroy(std::exchange(plan, nullptr)); }, 1);
  plx_decode_plan_destroy(std::exchange(plan, nullptr));
  const Stats create_destroy = Time(o.calls, [&] {
    const bool ok = Ok(plx_decode_plan_create(ctx, &hinted, &plan), "plx_decode_plan_create");
    plx_decode_plan_destroy(std::exchange(plan, nullptr));
    return ok;
  });
  if (!Ok(plx_decode_plan_create(ctx, &hinted, &plan), "plx_decode_plan_create")) return 1;
  plx_plan_info info;
  plx_plan_info_init(&info);
  const Stats get_info = Time(o.calls, [&] { return Ok(plx_decode_plan_get_info(plan, &info), "get_info"); });
  int n = 0;
  const Stats run = Time(
      o.calls, [&] { return Ok(plx_decode_plan_run(ctx, plan, (n++ & 1) ? &layer1 : &hinted, stream), "run"); },
      drain);
  const Stats once = Time(o.calls, [&] { return Ok(plx_decode(ctx, &hinted, stream), "plx_decode"); }, drain);
  drain();
  BareLaunch bare;
  if (!bare.Init()) {
    std::fprintf(stderr, "plx_plan_host_cost: could not load the bare kernel\n");
    return 1;
  }
  for (int i = 0; i < 100; ++i) bare.Run(stream);
  drain();
  const Stats bare_run = Time(o.calls, [&] { return bare.Run(stream); }, drain);
  drain();
  plx_decode_plan_destroy(plan);

  Print("plx_decode_validate", validate);
  Print("plx_decode_plan_create", create);
  Print("plx_decode_plan_create + destroy", create_destroy);
  Print("plx_decode_plan_get_info", get_info);
  Print("plx_decode_plan_run (launch incl.)", run);
  Print("plx_decode (plan + launch)", once);
  Print("bare cuLaunchKernel (empty kernel)", bare_run);
  std::printf("C API time beyond the launch (medians): plan_run %.2f us, plx_decode %.2f us\n",
              run.median - bare_run.median, once.median - bare_run.median);
  std::printf(
      "{\"bench\": \"plan_host_cost\", \"device\": \"%s\", \"batch\": %d, \"hq\": %d, \"hkv\": %d, \"d\": %d, "
      "\"page\": %d, \"capacity\": %d, \"hint\": %d, \"calls\": %d, \"hinted_splits\": %d, "
      "\"capacity_splits\": %d, \"median_us\": {\"validate\": %.3f, \"plan_create\": %.3f, \"plan_get_info\": %.3f, "
      "\"plan_run\": %.3f, \"decode\": %.3f, \"bare_launch\": %.3f}, \"p90_us\": {\"plan_create\": %.3f, \"plan_run\": %.3f}, "
      "\"plan_create_destroy_median_us\": %.3f}\n",
      dev.name, o.batch, o.hq, o.hkv, o.d, o.page, max_pages * o.page, longest, o.calls, with_hint.num_splits,
      from_capacity.num_splits, validate.median, create.median, get_info.median, run.median, once.median, bare_run.median, create.p90,
      run.p90, create_destroy.median);
  cudaStreamDestroy(stream);
  for (void* p : {q, r, out, k[0], k[1], v[0], v[1], bt, sl}) cudaFree(p);
  plx_context_destroy(ctx);
  return 0;
}
