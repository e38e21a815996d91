/* Parallax decode from plain C: one new token per sequence against a bf16 KV cache.
 *
 * Allocates with the CUDA runtime, calls plx_decode on a stream, and checks the result
 * against a double-precision evaluation of the Parallax formula on the host:
 *   out = O1/d1 * (1 + d2/d1) - O2/d1, with p1_j = exp(tau q.k_j - m), p2_j = p1_j (r.k_j).
 * Exit status: 0 pass, 1 failure, 77 no CUDA device (ctest treats 77 as skipped).
 *
 * Build: see runtime/CMakeLists.txt (target parallax_decode_example), or by hand:
 *   cc decode_example.c $(pkg-config --cflags --libs parallax) -I/usr/local/cuda/include \
 *      -L/usr/local/cuda/lib64 -lcudart -lm */
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parallax/parallax.h"

enum { B = 2, HQ = 8, HKV = 2, D = 128, LMAX = 300 };
static const int kSeqlens[B] = {300, 129};

static uint16_t to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  u += 0x7fffu + ((u >> 16) & 1u); /* round to nearest even */
  return (uint16_t)(u >> 16);
}
static double from_bf16(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static double gauss(void) { /* Box-Muller over xorshift64 */
  double u[2];
  for (int i = 0; i < 2; ++i) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    u[i] = ((g_rng >> 11) + 0.5) / 9007199254740992.0;
  }
  return sqrt(-2.0 * log(u[0])) * cos(6.283185307179586 * u[1]);
}

/* rows x D values, each row scaled to unit RMS (as a model's normed q, r, k would be). */
static void fill_rows(uint16_t* dst, size_t rows, double scale) {
  double tmp[D];
  for (size_t r = 0; r < rows; ++r) {
    double ss = 0;
    for (int i = 0; i < D; ++i) {
      tmp[i] = gauss();
      ss += tmp[i] * tmp[i];
    }
    const double inv = scale / sqrt(ss / D);
    for (int i = 0; i < D; ++i) dst[r * D + i] = to_bf16((float)(tmp[i] * inv));
  }
}

#define CUDA_CHECK(call)                                                              \
  do {                                                                                \
    cudaError_t e_ = (call);                                                          \
    if (e_ != cudaSuccess) {                                                          \
      fprintf(stderr, "%s failed: %s\n", #call, cudaGetErrorString(e_));              \
      return 1;                                                                       \
    }                                                                                 \
  } while (0)

static plx_tensor tensor(void* data, plx_dtype dtype, int ndim, const int64_t* shape) {
  plx_tensor t;
  memset(&t, 0, sizeof(t)); /* all-zero strides: contiguous */
  t.data = data;
  t.dtype = dtype;
  t.ndim = ndim;
  for (int i = 0; i < ndim; ++i) t.shape[i] = shape[i];
  return t;
}

int main(void) {
  printf("parallax %s\n", plx_version());
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    printf("no CUDA device: skipping\n");
    return 77;
  }
  CUDA_CHECK(cudaSetDevice(0)); /* the primary context libparallax uses too */

  const size_t nq = (size_t)B * HQ * D, nkv = (size_t)B * LMAX * HKV * D;
  uint16_t* hq = malloc(nq * 2);
  uint16_t* hr = malloc(nq * 2);
  uint16_t* hk = malloc(nkv * 2);
  uint16_t* hv = malloc(nkv * 2);
  uint16_t* ho = malloc(nq * 2);
  fill_rows(hq, (size_t)B * HQ, 1.0);
  fill_rows(hr, (size_t)B * HQ, 1.0);
  fill_rows(hk, (size_t)B * LMAX * HKV, 1.0);
  fill_rows(hv, (size_t)B * LMAX * HKV, 1.0);

  void *dq, *dr, *dk, *dv, *dout, *dlens;
  CUDA_CHECK(cudaMalloc(&dq, nq * 2));
  CUDA_CHECK(cudaMalloc(&dr, nq * 2));
  CUDA_CHECK(cudaMalloc(&dk, nkv * 2));
  CUDA_CHECK(cudaMalloc(&dv, nkv * 2));
  CUDA_CHECK(cudaMalloc(&dout, nq * 2));
  CUDA_CHECK(cudaMalloc(&dlens, sizeof(kSeqlens)));
  CUDA_CHECK(cudaMemcpy(dq, hq, nq * 2, cudaMemcpyHostToDevice));
  CUDA_CHECK(cudaMemcpy(dr, hr, nq * 2, cudaMemcpyHostToDevice));
  CUDA_CHECK(cudaMemcpy(dk, hk, nkv * 2, cudaMemcpyHostToDevice));
  CUDA_CHECK(cudaMemcpy(dv, hv, nkv * 2, cudaMemcpyHostToDevice));
  CUDA_CHECK(cudaMemcpy(dlens, kSeqlens, sizeof(kSeqlens), cudaMemcpyHostToDevice));
  CUDA_CHECK(cudaMemset(dout, 0xff, nq * 2)); /* poison: NaN in bf16 */

  plx_context* ctx = NULL;
  plx_status s = plx_context_create(NULL, &ctx);
  if (s == PLX_ERROR_NO_DEVICE) {
    printf("%s: skipping\n", plx_last_error());
    return 77;
  }
  if (s != PLX_OK) {
    fprintf(stderr, "%s: %s\n", plx_status_string(s), plx_last_error());
    return 1;
  }
  plx_device_info info;
  plx_device_info_init(&info); /* every struct starts from its _init (struct_size) */
  if (plx_context_get_device_info(ctx, &info) == PLX_OK)
    printf("device %d: %s (sm_%d%d, %d SMs)\n", info.ordinal, info.name, info.cc_major, info.cc_minor,
           info.sm_count);

  const int64_t q_shape[3] = {B, HQ, D};
  const int64_t kv_shape[4] = {B, LMAX, HKV, D};
  const int64_t lens_shape[1] = {B};
  plx_decode_args a;
  plx_decode_args_init(&a);
  a.q = tensor(dq, PLX_BF16, 3, q_shape);
  a.r = tensor(dr, PLX_BF16, 3, q_shape);
  a.k = tensor(dk, PLX_BF16, 4, kv_shape);
  a.v = tensor(dv, PLX_BF16, 4, kv_shape);
  a.out = tensor(dout, PLX_BF16, 3, q_shape);
  a.cache_seqlens = tensor(dlens, PLX_INT32, 1, lens_shape);

  plx_plan_info plan;
  plx_plan_info_init(&plan);
  s = plx_decode_plan_info(ctx, &a, &plan);
  if (s != PLX_OK) {
    fprintf(stderr, "plan: %s: %s\n", plx_status_string(s), plx_last_error());
    return 1;
  }
  printf("variant %s (%s), %d split(s), workspace %zu bytes\n", plan.variant, plx_choice_string(plan.choice),
         plan.num_splits, plan.workspace_bytes);

  cudaStream_t stream;
  CUDA_CHECK(cudaStreamCreate(&stream));
  s = plx_decode(ctx, &a, stream);
  if (s != PLX_OK) {
    fprintf(stderr, "decode: %s: %s\n", plx_status_string(s), plx_last_error());
    return 1;
  }
  CUDA_CHECK(cudaStreamSynchronize(stream));
  CUDA_CHECK(cudaMemcpy(ho, dout, nq * 2, cudaMemcpyDeviceToHost));

  /* Host reference in double on the same bf16 inputs. */
  const double tau = 1.0 / sqrt((double)D);
  double err2 = 0, ref2 = 0;
  double* s1 = malloc(sizeof(double) * LMAX);
  double* s2 = malloc(sizeof(double) * LMAX);
  for (int b = 0; b < B; ++b) {
    for (int h = 0; h < HQ; ++h) {
      const int kvh = h / (HQ / HKV);
      const uint16_t* q = hq + ((size_t)b * HQ + h) * D;
      const uint16_t* r = hr + ((size_t)b * HQ + h) * D;
      double m = -INFINITY;
      for (int j = 0; j < kSeqlens[b]; ++j) {
        const uint16_t* k = hk + (((size_t)b * LMAX + j) * HKV + kvh) * D;
        double a1 = 0, a2 = 0;
        for (int i = 0; i < D; ++i) {
          a1 += from_bf16(q[i]) * from_bf16(k[i]);
          a2 += from_bf16(r[i]) * from_bf16(k[i]);
        }
        s1[j] = tau * a1;
        s2[j] = a2;
        if (s1[j] > m) m = s1[j];
      }
      double d1 = 0, d2 = 0, o1[D] = {0}, o2[D] = {0};
      for (int j = 0; j < kSeqlens[b]; ++j) {
        const uint16_t* v = hv + (((size_t)b * LMAX + j) * HKV + kvh) * D;
        const double p1 = exp(s1[j] - m), p2 = p1 * s2[j];
        d1 += p1;
        d2 += p2;
        for (int i = 0; i < D; ++i) {
          o1[i] += p1 * from_bf16(v[i]);
          o2[i] += p2 * from_bf16(v[i]);
        }
      }
      const uint16_t* got = ho + ((size_t)b * HQ + h) * D;
      for (int i = 0; i < D; ++i) {
        const double want = o1[i] / d1 * (1 + d2 / d1) - o2[i] / d1;
        const double diff = from_bf16(got[i]) - want;
        err2 += diff * diff;
        ref2 += want * want;
      }
    }
  }
  const double rel = sqrt(err2 / ref2);
  const int pass = rel <= 1e-2; /* bf16 tolerance from the spec; NaN fails */
  printf("relative Frobenius error %.3e: %s\n", rel, pass ? "PASS" : "FAIL");

  cudaStreamDestroy(stream);
  plx_context_destroy(ctx);
  cudaFree(dq);
  cudaFree(dr);
  cudaFree(dk);
  cudaFree(dv);
  cudaFree(dout);
  cudaFree(dlens);
  free(hq);
  free(hr);
  free(hk);
  free(hv);
  free(ho);
  free(s1);
  free(s2);
  return pass ? 0 : 1;
}
