#include "host_inputs.h"

#include <cmath>
#include <cstring>

namespace parallax::search::internal {

uint16_t ToHalfBits(double x, DType t) {
  if (t == DType::kFP16) {
    const _Float16 h = static_cast<_Float16>(static_cast<float>(x));
    uint16_t b;
    std::memcpy(&b, &h, 2);
    return b;
  }
  const float f = static_cast<float>(x);
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffff) > 0x7f800000) return 0x7fc0;
  u += 0x7fff + ((u >> 16) & 1);  // round to nearest even
  return static_cast<uint16_t>(u >> 16);
}

double FromHalfBits(uint16_t h, DType t) {
  if (t == DType::kFP16) {
    _Float16 f;
    std::memcpy(&f, &h, 2);
    return static_cast<double>(static_cast<float>(f));
  }
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

uint16_t PoisonBits(DType t) { return t == DType::kBF16 ? 0x7fc1 : 0x7e01; }

std::vector<double> RandomRows(std::mt19937_64& rng, size_t rows, int d, bool rms_normalise) {
  std::normal_distribution<double> n(0.0, 1.0);
  std::vector<double> x(rows * d);
  for (size_t i = 0; i < rows; ++i) {
    double ss = 0;
    for (int j = 0; j < d; ++j) ss += (x[i * d + j] = n(rng)) * x[i * d + j];
    const double f = rms_normalise ? 1.0 / std::sqrt(ss / d) : 1.0;
    for (int j = 0; j < d; ++j) x[i * d + j] *= f;
  }
  return x;
}

std::vector<uint16_t> Quantise(std::vector<double>& x, DType t) {
  std::vector<uint16_t> h(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    h[i] = ToHalfBits(x[i], t);
    x[i] = FromHalfBits(h[i], t);
  }
  return h;
}

HostQrkv RandomQrkv(std::mt19937_64& rng, size_t q_rows, size_t kv_rows, int d, DType t) {
  HostQrkv h;
  h.q = RandomRows(rng, q_rows, d, true);
  h.r = RandomRows(rng, q_rows, d, true);
  h.k = RandomRows(rng, kv_rows, d, true);
  h.v = RandomRows(rng, kv_rows, d, false);
  h.qh = Quantise(h.q, t);
  h.rh = Quantise(h.r, t);
  h.kh = Quantise(h.k, t);
  h.vh = Quantise(h.v, t);
  return h;
}

ref::Family RefFamilyOf(const Algorithm& a, int window) {
  ref::Family f;
  f.probe = a.probe == Probe::kLearned ? ref::RefProbe::kLearned : ref::RefProbe::kNone;
  f.affine = a.affine == Affine::kAmplified ? ref::RefAffine::kAmplified : ref::RefAffine::kPlain;
  f.window = window;
  return f;
}

}  // namespace parallax::search::internal
