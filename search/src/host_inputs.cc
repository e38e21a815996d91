#include "host_inputs.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

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

HostPages ScatterIntoPages(const std::vector<uint16_t>& kh, const std::vector<uint16_t>& vh,
                           const std::vector<int>& lens, int lmax, size_t row, int page_size, int spare,
                           uint16_t poison, std::mt19937_64& rng) {
  const int B = static_cast<int>(lens.size());
  HostPages h;
  h.per_seq = (lmax + page_size - 1) / page_size;
  const int num_pages = B * h.per_seq + spare;
  std::vector<int> perm(num_pages);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  h.table.resize(size_t(B) * h.per_seq);
  h.k.assign(size_t(num_pages) * page_size * row, poison);
  h.v = h.k;
  for (int b = 0; b < B; ++b)
    for (int pg = 0; pg < h.per_seq; ++pg) {
      const int page = perm[b * h.per_seq + pg];
      h.table[size_t(b) * h.per_seq + pg] = page;
      for (int s = 0; s < page_size && pg * page_size + s < lens[b]; ++s) {
        const size_t src = (size_t(b) * lmax + pg * page_size + s) * row, dst = (size_t(page) * page_size + s) * row;
        std::copy_n(kh.begin() + src, row, h.k.begin() + dst);
        std::copy_n(vh.begin() + src, row, h.v.begin() + dst);
      }
    }
  return h;
}

}  // namespace parallax::search::internal
