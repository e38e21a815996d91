// plx_merge_states's kernel (codegen/kernels/common/merge_states.cuh) run on the host: the
// .cuh compiled as C++ with one std::thread per lane (warp shuffles and __syncwarp as
// barriers), bf16 conversions in software, fed by the C API's own translation of the
// arguments. Checks the kernel's arithmetic, its row/stride addressing in every layout and
// in-place merges against ref::MergeStates, without a GPU (the GPU suites run the real one).
#include <gtest/gtest.h>

#include <array>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "c_api_internal.h"
#include "parallax/codegen/reference.h"
#include "parallax/parallax.h"

// What the kernel source needs from CUDA and the prelude, on the host.
namespace host_cuda {
#define __device__
#define __forceinline__ inline
#define __global__
#define __launch_bounds__(x)
#define __align__(n) alignas(n)
#define PLX_INF __builtin_inff()
typedef unsigned short plx_e16;
typedef unsigned int plx_u32;
struct Dim3 {
  unsigned x = 0, y = 0, z = 0;
};
thread_local Dim3 threadIdx, blockIdx;
thread_local std::barrier<>* warp_barrier = nullptr;
thread_local float* warp_values = nullptr;
inline void __syncwarp() { warp_barrier->arrive_and_wait(); }
inline float plx_warp_sum(float x) {
  warp_values[threadIdx.x & 31] = x;
  warp_barrier->arrive_and_wait();
  float s = 0;
  for (int i = 0; i < 32; ++i) s += warp_values[i];
  warp_barrier->arrive_and_wait();  // everyone has read before the next sum writes
  return s;
}
inline float plx_to_float(plx_e16 x) {  // bf16
  const uint32_t u = uint32_t(x) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline plx_e16 ToBf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffff) > 0x7f800000) return 0x7fc0;
  u += 0x7fff + ((u >> 16) & 1);
  return plx_e16(u >> 16);
}
inline plx_u32 plx_pack2(float lo, float hi) { return plx_u32(ToBf16(lo)) | (plx_u32(ToBf16(hi)) << 16); }
}  // namespace host_cuda

// One instance of the kernel per (head dim, probe, affine), each under its own name.
#define PLX_MERGE_INSTANCE(NS, HD, LEARNED, AMPLIFIED)                                  \
  namespace NS {                                                                        \
  using namespace host_cuda;                                                            \
  constexpr int kHeadDim = HD;                                                          \
  constexpr bool kLearned = LEARNED;                                                    \
  constexpr bool kAmplified = AMPLIFIED;                                                \
  constexpr int kMergeWarps = 4;                                                        \
  }
PLX_MERGE_INSTANCE(merge_d64_amplified, 64, true, true)
namespace merge_d64_amplified {
#define plx_merge_states merge_d64_amplified_kernel  // extern "C": one name per instance
#include "kernels/common/merge_states.cuh"
#undef plx_merge_states
}  // namespace merge_d64_amplified
PLX_MERGE_INSTANCE(merge_d128_plain, 128, true, false)
namespace merge_d128_plain {
#define plx_merge_states merge_d128_plain_kernel  // extern "C": one name per instance
#include "kernels/common/merge_states.cuh"
#undef plx_merge_states
}  // namespace merge_d128_plain
PLX_MERGE_INSTANCE(merge_d256_none, 256, false, false)
namespace merge_d256_none {
#define plx_merge_states merge_d256_none_kernel  // extern "C": one name per instance
#include "kernels/common/merge_states.cuh"
#undef plx_merge_states
}  // namespace merge_d256_none

namespace {

using Vec = std::vector<double>;
using KernelFn = void (*)(const PlxMergeParams);

// The launch: grid ceil(rows / 4) CTAs of 4 warps, each warp's 32 lanes as threads.
void Launch(KernelFn kernel, const PlxMergeParams& p) {
  constexpr int kWarps = 4;
  const long long ctas = (p.rows + kWarps - 1) / kWarps;
  for (long long c = 0; c < ctas; ++c)
    for (int w = 0; w < kWarps; ++w) {
      std::barrier<> bar(32);
      float values[32];
      std::vector<std::thread> lanes;
      for (int l = 0; l < 32; ++l)
        lanes.emplace_back([&, l] {
          host_cuda::warp_barrier = &bar;
          host_cuda::warp_values = values;
          host_cuda::blockIdx.x = static_cast<unsigned>(c);
          host_cuda::threadIdx.x = static_cast<unsigned>(w * 32 + l);
          kernel(p);
        });
      for (std::thread& t : lanes) t.join();
    }
}

double Bf16(double x) { return host_cuda::plx_to_float(host_cuda::ToBf16(static_cast<float>(x))); }

Vec Rms(std::mt19937_64& g, int rows, int d, double scale) {
  std::normal_distribution<double> n;
  Vec x(size_t(rows) * d);
  for (int i = 0; i < rows; ++i) {
    double ss = 0;
    for (int j = 0; j < d; ++j) ss += (x[i * d + j] = n(g)) * x[i * d + j];
    for (int j = 0; j < d; ++j) x[i * d + j] *= scale / std::sqrt(ss / d);
  }
  return x;
}

struct Member {
  KernelFn kernel;
  int head_dim;
  bool learned, amplified;
};

// Parts of random rows over two key ranges (one row in four: part a empty), written as the
// kernels would (bf16 out / vbar, float statistics) into strided buffers of the layout
// (0: padded [B, L, H, D] with stats [B, H, L]; 1: packed [T, H, D] with [H, T]; 2: decode
// [B, H, D] with [B, H]); merged by the kernel into fresh buffers or in place.
void Check(const Member& m, int layout, bool in_place) {
  SCOPED_TRACE(::testing::Message() << "D=" << m.head_dim << " learned=" << m.learned << " amplified="
                                    << m.amplified << " layout=" << layout << " in_place=" << in_place);
  const int D = m.head_dim, H = 3;
  const int B = layout == 1 ? 1 : 2, L = layout == 2 ? 1 : (layout == 1 ? 7 : 5);
  const int rows = B * L * H;
  parallax::ref::Family f;
  f.probe = m.learned ? parallax::ref::RefProbe::kLearned : parallax::ref::RefProbe::kNone;
  f.affine = m.amplified ? parallax::ref::RefAffine::kAmplified : parallax::ref::RefAffine::kPlain;
  std::mt19937_64 g(100 + layout + 10 * D);
  std::vector<Vec> oa(rows), ob(rows), want(rows), qs(rows), rs(rows), va(rows), vb(rows);
  std::vector<parallax::ref::RowStats> sa(rows), sb(rows), sw(rows);
  for (int row = 0; row < rows; ++row) {
    constexpr int n = 20;
    const int split = row % 4 == 1 ? 0 : 7;
    Vec q = Rms(g, 1, D, 1.0), r = Rms(g, 1, D, m.amplified ? 0.1 : 1.0), k = Rms(g, n, D, 1.0), v = Rms(g, n, D, 1.0);
    for (double& x : q) x = Bf16(x);
    for (double& x : r) x = Bf16(x);
    qs[row] = q;
    rs[row] = r;
    oa[row].resize(D);
    ob[row].resize(D);
    want[row].resize(D);
    parallax::ref::AttendRow(q.data(), r.data(), k.data(), v.data(), split, D, D, f, oa[row].data(), &sa[row]);
    parallax::ref::AttendRow(q.data(), r.data(), k.data() + split * D, v.data() + split * D, n - split, D, D, f,
                             ob[row].data(), &sb[row]);
    for (int x = 0; x < D; ++x) {
      oa[row][x] = Bf16(oa[row][x]);
      ob[row][x] = Bf16(ob[row][x]);
      sa[row].vbar[x] = Bf16(sa[row].vbar[x]);
      sb[row].vbar[x] = Bf16(sb[row].vbar[x]);
    }
    for (parallax::ref::RowStats* s : {&sa[row], &sb[row]}) {
      s->lse = static_cast<float>(s->lse);
      s->tbar = static_cast<float>(s->tbar);
    }
    va[row] = sa[row].vbar;
    vb[row] = sb[row].vbar;
    double rq = 0;
    for (int x = 0; x < D; ++x) rq += q[x] * r[x];
    ASSERT_TRUE(parallax::ref::MergeStates(oa[row].data(), sa[row], ob[row].data(), sb[row], D, f, rq,
                                           want[row].data(), &sw[row])
                    .ok());
  }
  // Strided buffers: heads D + 8 apart (the tail stays poisoned), statistics rows padded.
  const int hs = D + 8, lpad = L + 3, tpad = L + 5, hpad = H + 2;
  auto index = [&](int row) { return std::array<int, 3>{row / (H * L), (row / H) % L, row % H}; };
  auto row_offset = [&](int row) {
    const auto [b, l, h] = index(row);
    return ((size_t(b) * L + l) * H + h) * hs;
  };
  auto stat_offset = [&](int row) -> size_t {
    const auto [b, l, h] = index(row);
    if (layout == 0) return (size_t(b) * H + h) * lpad + l;
    if (layout == 1) return size_t(h) * tpad + l;
    return size_t(b) * hpad + h;
  };
  const size_t row_elems = size_t(B) * L * H * hs + 64;
  const size_t stat_elems = (layout == 0 ? size_t(B) * H * lpad : layout == 1 ? size_t(H) * tpad : size_t(B) * hpad) + 8;
  struct alignas(16) Chunk {
    uint16_t e[8];
  };
  std::vector<std::vector<Chunk>> store;  // 16-byte aligned row buffers
  auto rows_of = [&](const std::vector<Vec>* src) {
    store.emplace_back((row_elems + 7) / 8);
    uint16_t* p = store.back()[0].e;
    std::fill_n(p, row_elems, uint16_t{0xffff});
    if (src)
      for (int row = 0; row < rows; ++row)
        for (int x = 0; x < D; ++x) p[row_offset(row) + x] = host_cuda::ToBf16(static_cast<float>((*src)[row][x]));
    return p;
  };
  std::vector<std::vector<float>> fstore;
  auto stats_of = [&](auto get) {
    fstore.emplace_back(stat_elems, std::nanf(""));
    for (int row = 0; row < rows; ++row) fstore.back()[stat_offset(row)] = static_cast<float>(get(row));
    return fstore.back().data();
  };
  store.reserve(16);
  fstore.reserve(8);
  uint16_t *p_oa = rows_of(&oa), *p_va = rows_of(&va), *p_ob = rows_of(&ob), *p_vb = rows_of(&vb);
  uint16_t *p_q = rows_of(&qs), *p_r = rows_of(&rs), *p_o = rows_of(nullptr), *p_v = rows_of(nullptr);
  float *p_la = stats_of([&](int r) { return sa[r].lse; }), *p_ta = stats_of([&](int r) { return sa[r].tbar; });
  float *p_lb = stats_of([&](int r) { return sb[r].lse; }), *p_tb = stats_of([&](int r) { return sb[r].tbar; });
  float *p_l = stats_of([](int) { return std::nan(""); }), *p_t = stats_of([](int) { return std::nan(""); });
  auto row_t = [&](void* p) {
    plx_tensor t{};
    t.data = p;
    t.dtype = PLX_BF16;
    const int64_t s3[] = {int64_t(L) * H * hs, int64_t(H) * hs, hs, 1};
    if (layout == 0) {
      t.ndim = 4;
      const int64_t sh[] = {B, L, H, D};
      std::copy(sh, sh + 4, t.shape);
      std::copy(s3, s3 + 4, t.strides);
    } else {
      t.ndim = 3;
      const int64_t sh[] = {layout == 1 ? L : B, H, D};
      const int64_t st[] = {int64_t(H) * hs, hs, 1};
      std::copy(sh, sh + 3, t.shape);
      std::copy(st, st + 3, t.strides);
    }
    return t;
  };
  auto stat_t = [&](void* p) {
    plx_tensor t{};
    t.data = p;
    t.dtype = PLX_FLOAT32;
    if (layout == 0) {
      t.ndim = 3;
      const int64_t sh[] = {B, H, L}, st[] = {int64_t(H) * lpad, lpad, 1};
      std::copy(sh, sh + 3, t.shape);
      std::copy(st, st + 3, t.strides);
    } else {
      t.ndim = 2;
      const int64_t sh[] = {layout == 1 ? H : B, layout == 1 ? L : H}, st[] = {layout == 1 ? tpad : hpad, 1};
      std::copy(sh, sh + 2, t.shape);
      std::copy(st, st + 2, t.strides);
    }
    return t;
  };
  plx_merge_args a{};
  a.struct_size = sizeof(a);
  a.probe = m.learned ? PLX_PROBE_LEARNED : PLX_PROBE_NONE;
  a.affine = m.amplified ? PLX_AFFINE_AMPLIFIED : PLX_AFFINE_PLAIN;
  a.eps = 1e-6f;
  a.packed = layout == 1;
  a.out_a = row_t(p_oa); a.vbar_a = row_t(p_va); a.lse_a = stat_t(p_la); a.tbar_a = stat_t(p_ta);
  a.out_b = row_t(p_ob); a.vbar_b = row_t(p_vb); a.lse_b = stat_t(p_lb); a.tbar_b = stat_t(p_tb);
  a.q = row_t(p_q);
  a.r = row_t(p_r);
  if (in_place) {
    a.out = a.out_a; a.vbar = a.vbar_a; a.lse = a.lse_a; a.tbar = a.tbar_a;
  } else {
    a.out = row_t(p_o); a.vbar = row_t(p_v); a.lse = stat_t(p_l); a.tbar = stat_t(p_t);
  }
  absl::StatusOr<parallax::capi::MergeCall> c = parallax::capi::TranslateMergeArgs(a);
  ASSERT_TRUE(c.ok()) << c.status();
  Launch(m.kernel, c->params);

  const uint16_t* out = in_place ? p_oa : p_o;
  const uint16_t* vbar = in_place ? p_va : p_v;
  const float* lse = in_place ? p_la : p_l;
  const float* tbar = in_place ? p_ta : p_t;
  double peak = 0, err = 0, vbar_err = 0, lse_err = 0, tbar_err = 0;
  long touched = 0;
  for (int row = 0; row < rows; ++row) {
    const size_t o = row_offset(row);
    for (int x = 0; x < D; ++x) {
      peak = std::max(peak, std::fabs(want[row][x]));
      err = std::max(err, std::fabs(host_cuda::plx_to_float(out[o + x]) - want[row][x]));
      vbar_err = std::max(vbar_err, std::fabs(host_cuda::plx_to_float(vbar[o + x]) - sw[row].vbar[x]));
    }
    for (int x = D; x < hs && !in_place; ++x) touched += out[o + x] != 0xffff || vbar[o + x] != 0xffff;
    lse_err = std::max(lse_err, std::fabs(lse[stat_offset(row)] - sw[row].lse) / std::max(1.0, std::fabs(sw[row].lse)));
    tbar_err = std::max(tbar_err, std::fabs(tbar[stat_offset(row)] - sw[row].tbar));
  }
  // bf16 outputs: half an ulp of the peak is 2^-9 ~ 2e-3; fp32 statistics.
  EXPECT_LT(err / peak, 8e-3);
  EXPECT_LT(vbar_err / peak, 8e-3);
  EXPECT_LT(lse_err, 1e-5);
  EXPECT_LT(tbar_err, 1e-4);
  EXPECT_EQ(touched, 0) << "the merge wrote outside its rows";
}

TEST(MergeKernelOnHost, EveryLayoutInPlaceOrNot) {
  for (const Member& m : {Member{merge_d64_amplified::merge_d64_amplified_kernel, 64, true, true},
                          Member{merge_d128_plain::merge_d128_plain_kernel, 128, true, false},
                          Member{merge_d256_none::merge_d256_none_kernel, 256, false, false}})
    for (int layout = 0; layout < 3; ++layout)
      for (bool in_place : {false, true}) Check(m, layout, in_place);
}

}  // namespace
