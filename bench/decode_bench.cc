// Decode timing on the GPU: our Parallax (probe learned) and softmax (probe none) members
// over a B x L grid, CUDA-graph replay timed with events (median of trials), plus the
// device-to-device copy bandwidth measured in the same process. Prints JSON lines.
// Usage: plx_decode_bench [--hq 32 --hkv 8 --d 128 --paged 0] (bf16, contiguous by default)
//        [--shapes 1x512,32x4096 (B x L; default the 4 x 4 grid below)]
//        [--schedules S1,S2 | --family decode_sm90] [--probe learned|none|both]
// --schedules times each given schedule (the key from its path on, e.g.
// "wgmma-n64-w4-s4-split8-g1-cluster"; "gG" is replaced by the most heads per CTA that stay
// valid; "default" is the runtime's own choice) at every shape and prints a table, schedules
// as columns; --family decode_sm90 is that with a built-in list of the family's schedules.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "parallax/runtime/cuda_driver.h"
#include "parallax/runtime/runtime.h"

using namespace parallax;

namespace {
const cu::Api* A() { return *cu::Driver(); }
#define CK(x)                                                                 \
  do {                                                                        \
    CUresult r_ = (x);                                                        \
    if (r_ != CUDA_SUCCESS) {                                                 \
      fprintf(stderr, "%s\n", std::string(cu::Check(r_, #x).message()).c_str()); \
      exit(1);                                                                \
    }                                                                         \
  } while (0)

float TimeGraph(CUgraphExec g, CUstream s, int reps) {
  CUevent a, b;
  CK(A()->cuEventCreate(&a, 0));
  CK(A()->cuEventCreate(&b, 0));
  std::vector<float> t;
  for (int trial = 0; trial < 7; ++trial) {
    CK(A()->cuEventRecord(a, s));
    for (int i = 0; i < reps; ++i) CK(A()->cuGraphLaunch(g, s));
    CK(A()->cuEventRecord(b, s));
    CK(A()->cuEventSynchronize(b));
    float ms = 0;
    CK(A()->cuEventElapsedTime(&ms, a, b));
    t.push_back(ms * 1000.f / reps);
  }
  std::sort(t.begin(), t.end());
  A()->cuEventDestroy_v2(a);
  A()->cuEventDestroy_v2(b);
  return t[t.size() / 2];
}

std::vector<std::string> SplitList(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string item; std::getline(in, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

// The sm_90a decode family's schedules the lead times against the default (issue #16):
// the ring depth and tile, and the split merge in a cluster vs the second kernel.
const char* const kDecodeSm90Schedules[] = {
    "default",
    "wgmma-n64-w4-s4-splitauto-gG",
    "wgmma-n128-w8-s3-splitauto-gG",
    "wgmma-n64-w4-s4-split16-gG",
    "wgmma-n64-w4-s4-split4-gG-cluster",
    "wgmma-n64-w4-s4-split8-gG-cluster",
    "wgmma-n64-w4-s4-split16-gG-cluster",
    "wgmma-n128-w8-s3-split8-gG-cluster",
    "wgmma-n128-w8-s3-split16-gG-cluster",
    "wgmma-n128-w4-s3-split16-gG-cluster",
};

// The full key of `schedule` for the problem ("" for "default"); "gG" becomes the most heads
// per CTA that make a valid key. Empty with *why set when none does.
std::string KeyFor(const Problem& p, const Algorithm& al, const std::string& schedule, std::string* why) {
  if (schedule == "default") return "";
  const size_t at = schedule.find("gG");
  for (int h = std::min(p.group_size(), 16); h >= 1; --h) {
    if (p.group_size() % h) continue;
    std::string sched = schedule;
    if (at != std::string::npos) sched.replace(at, 2, "g" + std::to_string(h));
    const std::string key = ProblemKey(p, al) + "." + sched;
    absl::StatusOr<Variant> v = Variant::Parse(key);
    if (v.ok()) return key;
    *why = std::string(v.status().message());
    if (at == std::string::npos) break;
  }
  return "";
}
}  // namespace

int main(int argc, char** argv) {
  int hq = 32, hkv = 8, d = 128, paged = 0;
  std::vector<std::pair<int, int>> shapes;  // (B, L)
  std::vector<std::string> schedules;
  std::string probe = "learned";
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--hq")) hq = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--hkv")) hkv = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--d")) d = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--paged")) paged = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--probe")) probe = argv[i + 1];
    else if (!strcmp(argv[i], "--schedules")) schedules = SplitList(argv[i + 1]);
    else if (!strcmp(argv[i], "--family")) {
      if (strcmp(argv[i + 1], "decode_sm90") != 0) {
        fprintf(stderr, "--family: only decode_sm90 has a built-in schedule list\n");
        return 2;
      }
      schedules.assign(std::begin(kDecodeSm90Schedules), std::end(kDecodeSm90Schedules));
    } else if (!strcmp(argv[i], "--shapes")) {
      for (const std::string& bl : SplitList(argv[i + 1])) {
        int b = 0, l = 0;
        if (sscanf(bl.c_str(), "%dx%d", &b, &l) != 2 || b < 1 || l < 1) {
          fprintf(stderr, "--shapes: expected BxL, got '%s'\n", bl.c_str());
          return 2;
        }
        shapes.emplace_back(b, l);
      }
    } else {
      fprintf(stderr, "unknown option %s\n", argv[i]);
      return 2;
    }
  }
  if (shapes.empty())
    for (int B : {1, 8, 32, 128})
      for (int L : {1024, 4096, 16384, 65536}) shapes.emplace_back(B, L);
  std::vector<bool> probes;  // learned?
  if (probe == "learned" || probe == "both") probes.push_back(true);
  if (probe == "none" || probe == "both") probes.push_back(false);
  // The --schedules table: (probe, B, L) -> schedule -> us (< 0: not valid here).
  std::map<std::string, std::map<std::string, float>> results;
  std::vector<std::string> rows;  // the table's rows in the order they were timed
  auto rt_or = Runtime::Create(RuntimeOptions{});
  if (!rt_or.ok()) {
    fprintf(stderr, "no GPU: %s\n", std::string(rt_or.status().message()).c_str());
    return 1;
  }
  Runtime& rt = **rt_or;
  CK(rt.MakeCurrent().ok() ? CUDA_SUCCESS : CUDA_ERROR_INVALID_CONTEXT);
  CUstream s;
  CK(A()->cuStreamCreate(&s, 0));
  {  // copy bandwidth (bytes read + written), 2 GiB buffers, eager copies timed by events
    const size_t n = size_t(2) << 30;
    CUdeviceptr x, y;
    CK(A()->cuMemAlloc_v2(&x, n));
    CK(A()->cuMemAlloc_v2(&y, n));
    CK(A()->cuMemsetD8_v2(x, 1, n));
    CUevent a, b;
    CK(A()->cuEventCreate(&a, 0));
    CK(A()->cuEventCreate(&b, 0));
    for (int i = 0; i < 3; ++i) CK(A()->cuMemcpyDtoD_v2(y, x, n));
    CK(A()->cuEventRecord(a, nullptr));
    for (int i = 0; i < 20; ++i) CK(A()->cuMemcpyDtoD_v2(y, x, n));
    CK(A()->cuEventRecord(b, nullptr));
    CK(A()->cuEventSynchronize(b));
    float ms = 0;
    CK(A()->cuEventElapsedTime(&ms, a, b));
    printf("{\"copy_gbps\": %.1f}\n", 2.0 * n * 20 / (ms * 1e-3) / 1e9);
    // The replay floor: a graph of one empty kernel (132 CTAs of 128 threads) timed like the
    // decode graphs, so a table can tell the fixed launch cost from the kernel's own time.
    static const char kEmptyPtx[] =
        ".version 7.8\n.target sm_80\n.address_size 64\n.visible .entry plx_empty()\n{\n ret;\n}\n";
    CUmodule mod;
    CUfunction fn;
    CK(A()->cuModuleLoadData(&mod, kEmptyPtx));
    CK(A()->cuModuleGetFunction(&fn, mod, "plx_empty"));
    CUgraph g;
    CUgraphExec ge;
    CK(A()->cuStreamBeginCapture_v2(s, CU_STREAM_CAPTURE_MODE_THREAD_LOCAL));
    CK(A()->cuLaunchKernel(fn, 132, 1, 1, 128, 1, 1, 0, s, nullptr, nullptr));
    CK(A()->cuStreamEndCapture(s, &g));
    CK(A()->cuGraphInstantiateWithFlags(&ge, g, 0));
    printf("{\"replay_floor_us\": %.2f}\n", TimeGraph(ge, s, 50));
    A()->cuGraphExecDestroy(ge);
    A()->cuGraphDestroy(g);
    A()->cuModuleUnload(mod);
    A()->cuMemFree_v2(x);
    A()->cuMemFree_v2(y);
  }
  for (auto [B, L] : shapes) {
    {
      const size_t kv = size_t(B) * L * hkv * d * 2;
      if (2 * kv > size_t(60) << 30) continue;
      CUdeviceptr q, r, k, v, o;
      CK(A()->cuMemAlloc_v2(&q, size_t(B) * hq * d * 2));
      CK(A()->cuMemAlloc_v2(&r, size_t(B) * hq * d * 2));
      CK(A()->cuMemAlloc_v2(&o, size_t(B) * hq * d * 2));
      CK(A()->cuMemAlloc_v2(&k, kv));
      CK(A()->cuMemAlloc_v2(&v, kv));
      CK(A()->cuMemsetD16_v2(q, 0x3c00, size_t(B) * hq * d));  // small non-zero values
      CK(A()->cuMemsetD16_v2(r, 0x3a00, size_t(B) * hq * d));
      CK(A()->cuMemsetD16_v2(k, 0x3b00, kv / 2));
      CK(A()->cuMemsetD16_v2(v, 0x3d00, kv / 2));
      CUdeviceptr table = 0, lens = 0;
      const int pages_per_seq = paged ? (L + paged - 1) / paged : 0;
      if (paged) {  // pages of each sequence scattered by a fixed permutation (not contiguous)
        std::vector<int> bt(size_t(B) * pages_per_seq), sl(B, L);
        const long long n = (long long)B * pages_per_seq;
        for (long long i = 0; i < n; ++i) bt[i] = int((i * 7919) % n);  // 7919 prime: a bijection unless n % 7919 == 0
        CK(A()->cuMemAlloc_v2(&table, bt.size() * 4));
        CK(A()->cuMemAlloc_v2(&lens, sl.size() * 4));
        CK(A()->cuMemcpyHtoD_v2(table, bt.data(), bt.size() * 4));
        CK(A()->cuMemcpyHtoD_v2(lens, sl.data(), sl.size() * 4));
      }
      auto set_kv = [&](DecodeArgs& a) {
        if (!paged) return;
        a.block_table = reinterpret_cast<const int*>(table);
        a.block_table_stride = pages_per_seq;
        a.seqlens = reinterpret_cast<const int*>(lens);
        a.page_size = paged;
        a.num_pages = int64_t(B) * pages_per_seq;
        a.k_stride_0 = a.v_stride_0 = int64_t(paged) * hkv * d;
      };
      // bf16 decode over this shape's buffers; r null = the softmax member.
      auto make_args = [&](bool learned) {
        DecodeArgs a;
        a.dtype = DType::kBF16; a.batch = B; a.num_q_heads = hq; a.num_kv_heads = hkv; a.head_dim = d;
        a.q = reinterpret_cast<void*>(q); a.r = learned ? reinterpret_cast<void*>(r) : nullptr;
        a.k = reinterpret_cast<void*>(k); a.v = reinterpret_cast<void*>(v); a.out = reinterpret_cast<void*>(o);
        a.q_stride_b = a.r_stride_b = a.o_stride_b = int64_t(hq) * d;
        a.q_stride_h = a.r_stride_h = a.o_stride_h = d;
        a.k_stride_0 = a.v_stride_0 = int64_t(L) * hkv * d;
        a.k_stride_1 = a.v_stride_1 = int64_t(hkv) * d;
        a.k_stride_h = a.v_stride_h = d;
        a.seqlen = L;
        set_kv(a);
        return a;
      };
      // One plan: three eager runs, then a graph of one run timed by replay (us).
      auto time_plan = [&](const DecodePlan& plan, const DecodeArgs& a) -> float {
        for (int i = 0; i < 3; ++i)
          if (auto st = rt.RunDecode(plan, a, s); !st.ok()) {
            fprintf(stderr, "%s: %s\n", plan.variant.Key().c_str(), std::string(st.message()).c_str());
            return -1.f;
          }
        if (A()->cuStreamSynchronize(s) != CUDA_SUCCESS) {  // a launch that failed on the device
          fprintf(stderr, "%s: the decode failed on the device\n", plan.variant.Key().c_str());
          exit(1);
        }
        CUgraph g;
        CUgraphExec ge;
        CK(A()->cuStreamBeginCapture_v2(s, CU_STREAM_CAPTURE_MODE_THREAD_LOCAL));
        (void)rt.RunDecode(plan, a, s);
        CK(A()->cuStreamEndCapture(s, &g));
        CK(A()->cuGraphInstantiateWithFlags(&ge, g, 0));
        const float us = TimeGraph(ge, s, L * B >= 1 << 20 ? 10 : 50);
        A()->cuGraphExecDestroy(ge);
        A()->cuGraphDestroy(g);
        return us;
      };
      for (bool learned : schedules.empty() ? std::vector<bool>{} : probes) {
        const Problem p{Mode::kDecode, DType::kBF16, d, hq, hkv, paged ? KvLayout::kPaged : KvLayout::kContiguous,
                        paged, false};
        const Algorithm al{learned ? Probe::kLearned : Probe::kNone, Affine::kPlain};
        const std::string row = std::string(learned ? "learned" : "none") + " B=" + std::to_string(B) +
                                " L=" + std::to_string(L);
        for (const std::string& sched : schedules) {
          std::string why;
          DecodeArgs a = make_args(learned);
          a.variant_key = KeyFor(p, al, sched, &why);
          float us = -1.f;
          int splits = 0;
          std::string key = a.variant_key;
          if (sched != "default" && a.variant_key.empty()) {
            fprintf(stderr, "%s at %s: %s\n", sched.c_str(), row.c_str(), why.c_str());
          } else if (auto plan = rt.PlanDecode(a); !plan.ok()) {
            fprintf(stderr, "%s at %s: %s\n", sched.c_str(), row.c_str(), std::string(plan.status().message()).c_str());
          } else {
            us = time_plan(*plan, a);
            splits = plan->num_splits;
            key = plan->variant.Key();
          }
          if (results.find(row) == results.end()) rows.push_back(row);
          results[row][sched] = us;
          printf("{\"B\": %d, \"L\": %d, \"hq\": %d, \"hkv\": %d, \"d\": %d, \"paged\": %d, \"probe\": \"%s\", "
                 "\"schedule\": \"%s\", \"variant\": \"%s\", \"splits\": %d, \"us\": %.2f, \"kv_gbps\": %.1f}\n",
                 B, L, hq, hkv, d, paged, learned ? "learned" : "none", sched.c_str(), key.c_str(), splits, us,
                 us > 0 ? 2.0 * kv / (us * 1e-6) / 1e9 : 0.0);
          fflush(stdout);
        }
      }
      for (int mode = 0; mode < (schedules.empty() ? 4 : 0); ++mode) {
        const bool learned = mode < 2, fused = mode % 2 == 1;
        DecodeArgs a = make_args(learned);
        if (fused) {  // the default schedule with the split merge fused into the main kernel
          Problem p{Mode::kDecode, DType::kBF16, d, hq, hkv, paged ? KvLayout::kPaged : KvLayout::kContiguous,
                    paged, false};
          Algorithm al{learned ? Probe::kLearned : Probe::kNone, Affine::kPlain};
          Schedule sc = CanonicalSchedule(p, al, DefaultDecodeSchedule(p, al));
          sc.fused_merge = true;
          a.variant_key = Variant::Create(p, al, sc)->Key();
        }
        auto plan = rt.PlanDecode(a);
        if (!plan.ok()) { fprintf(stderr, "%s\n", std::string(plan.status().message()).c_str()); return 1; }
        for (int i = 0; i < 3; ++i)
          if (auto st = rt.RunDecode(*plan, a, s); !st.ok()) { fprintf(stderr, "%s\n", std::string(st.message()).c_str()); return 1; }
        CK(A()->cuStreamSynchronize(s));
        CUgraph g;
        CUgraphExec ge;
        CK(A()->cuStreamBeginCapture_v2(s, CU_STREAM_CAPTURE_MODE_THREAD_LOCAL));
        (void)rt.RunDecode(*plan, a, s);
        CK(A()->cuStreamEndCapture(s, &g));
        CK(A()->cuGraphInstantiateWithFlags(&ge, g, 0));
        const int reps = L * B >= 1 << 20 ? 10 : 50;
        const float us = TimeGraph(ge, s, reps);
        printf("{\"B\": %d, \"L\": %d, \"hq\": %d, \"hkv\": %d, \"d\": %d, \"paged\": %d, \"probe\": \"%s\", \"fused\": %d, \"variant\": \"%s\", "
               "\"splits\": %d, \"us\": %.2f, \"kv_gbps\": %.1f}\n",
               B, L, hq, hkv, d, paged, learned ? "learned" : "none", fused ? 1 : 0, plan->variant.Key().c_str(), plan->num_splits, us,
               2.0 * kv / (us * 1e-6) / 1e9);
        fflush(stdout);
        A()->cuGraphExecDestroy(ge);
        A()->cuGraphDestroy(g);
      }
      if (schedules.empty() && B <= 8 && !paged && hq == 32) {  // split sweep (probe learned, separate merge kernel): informs the default
        for (int splits : {2, 4, 8, 16, 32, 64}) {
          if (splits * 128 > L) continue;
          DecodeArgs a = make_args(true);
          a.num_splits = splits;
          auto plan = rt.PlanDecode(a);
          if (!plan.ok()) continue;
          for (int i = 0; i < 3; ++i) (void)rt.RunDecode(*plan, a, s);
          CK(A()->cuStreamSynchronize(s));
          CUgraph g;
          CUgraphExec ge;
          CK(A()->cuStreamBeginCapture_v2(s, CU_STREAM_CAPTURE_MODE_THREAD_LOCAL));
          (void)rt.RunDecode(*plan, a, s);
          CK(A()->cuStreamEndCapture(s, &g));
          CK(A()->cuGraphInstantiateWithFlags(&ge, g, 0));
          printf("{\"sweep\": 1, \"B\": %d, \"L\": %d, \"splits\": %d, \"us\": %.2f}\n", B, L, splits,
                 TimeGraph(ge, s, 50));
          A()->cuGraphExecDestroy(ge);
          A()->cuGraphDestroy(g);
        }
      }
      for (CUdeviceptr p : {q, r, k, v, o}) A()->cuMemFree_v2(p);
      if (paged) {
        A()->cuMemFree_v2(table);
        A()->cuMemFree_v2(lens);
      }
    }
  }
  if (!results.empty()) {  // the --schedules table: us per (probe, B, L) and schedule; "-" not valid
    printf("\n%-22s", "shape \\ schedule (us)");
    for (size_t j = 0; j < schedules.size(); ++j) printf(" %8s", ("[" + std::to_string(j) + "]").c_str());
    printf("\n");
    for (const std::string& row : rows) {
      std::map<std::string, float>& cols = results[row];
      printf("%-22s", row.c_str());
      for (const std::string& sched : schedules)
        cols[sched] > 0 ? printf(" %8.2f", cols[sched]) : printf(" %8s", "-");
      printf("\n");
    }
    for (size_t j = 0; j < schedules.size(); ++j) printf("[%zu] %s\n", j, schedules[j].c_str());
  }
  return 0;
}
