// The C API tests' fixtures: fake device pointers (aligned, never dereferenced), valid
// decode / prefill arguments to break one field at a time, and error expectations.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <string>

#include "parallax/parallax.h"
#include "parallax/parallax.hpp"
#include "parallax/runtime/kernel_call.h"
#include "parallax/runtime/runtime.h"

namespace parallax::capi_fixtures {

inline void* Fake(uintptr_t i) { return reinterpret_cast<void*>(0x100000 * i); }

inline plx_tensor T(void* data, plx_dtype dt, std::initializer_list<int64_t> shape,
                    std::initializer_list<int64_t> strides = {}) {
  return parallax::MakeTensor(data, dt, shape, strides);
}

inline constexpr int kB = 2, kHq = 8, kHkv = 2, kD = 128, kL = 64;
inline constexpr int64_t kIntMax32 = std::numeric_limits<int32_t>::max();

inline plx_decode_args ValidDecode(plx_dtype dt = PLX_BF16) {
  plx_decode_args a = parallax::MakeDecodeArgs();
  a.q = T(Fake(1), dt, {kB, kHq, kD});
  a.r = T(Fake(2), dt, {kB, kHq, kD});
  a.k = T(Fake(3), dt, {kB, kL, kHkv, kD});
  a.v = T(Fake(4), dt, {kB, kL, kHkv, kD});
  a.out = T(Fake(5), dt, {kB, kHq, kD});
  return a;
}

// Paged: 16 pages of 16 slots, block table [B, 4].
inline plx_decode_args ValidPagedDecode() {
  plx_decode_args a = ValidDecode();
  a.k = T(Fake(3), PLX_BF16, {16, 16, kHkv, kD});
  a.v = T(Fake(4), PLX_BF16, {16, 16, kHkv, kD});
  a.block_table = T(Fake(6), PLX_INT32, {kB, 4});
  a.cache_seqlens = T(Fake(7), PLX_INT32, {kB});
  return a;
}

inline plx_prefill_args ValidPrefill() {
  plx_prefill_args a = parallax::MakePrefillArgs();
  a.q = T(Fake(1), PLX_FP16, {kB, 40, kHq, kD});
  a.r = T(Fake(2), PLX_FP16, {kB, 40, kHq, kD});
  a.k = T(Fake(3), PLX_FP16, {kB, 50, kHkv, kD});
  a.v = T(Fake(4), PLX_FP16, {kB, 50, kHkv, kD});
  a.out = T(Fake(5), PLX_FP16, {kB, 40, kHq, kD});
  return a;
}

inline plx_prefill_args ValidPackedPrefill() {
  plx_prefill_args a = parallax::MakePrefillArgs();
  a.q = T(Fake(1), PLX_BF16, {90, kHq, kD});
  a.r = T(Fake(2), PLX_BF16, {90, kHq, kD});
  a.k = T(Fake(3), PLX_BF16, {120, kHkv, kD});
  a.v = T(Fake(4), PLX_BF16, {120, kHkv, kD});
  a.out = T(Fake(5), PLX_BF16, {90, kHq, kD});
  a.cu_seqlens_q = T(Fake(6), PLX_INT32, {3});
  a.cu_seqlens_k = T(Fake(7), PLX_INT32, {3});
  a.max_seqlen_q = 60;
  a.max_seqlen_k = 70;
  return a;
}

// The call fails with `want` and a message containing each of `needles`.
template <typename Args>
void ExpectError(plx_status (*fn)(const Args*), const Args& a, plx_status want,
                 std::initializer_list<const char*> needles) {
  plx_status got = PLX_OK;
  EXPECT_NO_THROW(got = fn(&a));
  const std::string msg = plx_last_error();
  EXPECT_EQ(got, want) << plx_status_string(got) << ": " << msg;
  for (const char* n : needles) EXPECT_NE(msg.find(n), std::string::npos) << "'" << n << "' not in: " << msg;
}
inline void ExpectDecodeError(const plx_decode_args& a, plx_status want,
                              std::initializer_list<const char*> needles) {
  ExpectError(&plx_decode_validate, a, want, needles);
}
inline void ExpectPrefillError(const plx_prefill_args& a, plx_status want,
                               std::initializer_list<const char*> needles) {
  ExpectError(&plx_prefill_validate, a, want, needles);
}

// The default variant key of a problem with the fixtures' heads and head dim ("" if none).
inline std::string DefaultKey(Mode mode, DType dtype, bool window = false, Probe probe = Probe::kLearned) {
  Problem p;
  p.mode = mode;
  p.dtype = dtype;
  p.head_dim = kD;
  p.num_q_heads = kHq;
  p.num_kv_heads = kHkv;
  p.window = window;
  Algorithm alg;
  alg.probe = probe;
  absl::StatusOr<Variant> v = Variant::Create(p, alg, CanonicalSchedule(p, alg, DefaultSchedule(p, alg)));
  return v.ok() ? v->Key() : "";
}

// Two translated calls launch the same kernel with the same parameters, padding included.
inline bool SameParams(const PlxDecodeParams& a, const PlxDecodeParams& b) {
  return std::memcmp(&a, &b, sizeof(a)) == 0;
}
inline bool SameParams(const PlxPrefillParams& a, const PlxPrefillParams& b) {
  return std::memcmp(&a, &b, sizeof(a)) == 0;
}

}  // namespace parallax::capi_fixtures
