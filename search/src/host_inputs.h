// Model-like random inputs on the host (the reduced-shape verification, checked against the
// float64 reference), as tests/runtime/gpu_harness.cc makes them: q, r and k rows
// RMS-normalised, v standard normal, all rounded to the 16-bit dtype so the reference sees
// exactly what the kernel reads.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "parallax/codegen/reference.h"
#include "parallax/codegen/variant.h"

namespace parallax::search::internal {

uint16_t ToHalfBits(double x, DType t);
double FromHalfBits(uint16_t h, DType t);
uint16_t PoisonBits(DType t);  // a NaN payload: unwritten outputs show

std::vector<double> RandomRows(std::mt19937_64& rng, size_t rows, int d, bool rms_normalise);
// Rounds x to the dtype in place and returns the 16-bit images.
std::vector<uint16_t> Quantise(std::vector<double>& x, DType t);

// An attention family's inputs, drawn from rng in the order q, r, k, v (q_rows of q and r,
// kv_rows of k and v, d values a row) and rounded: the doubles the reference reads and the
// 16-bit images the kernel reads.
struct HostQrkv {
  std::vector<double> q, r, k, v;
  std::vector<uint16_t> qh, rh, kh, vh;
};
HostQrkv RandomQrkv(std::mt19937_64& rng, size_t q_rows, size_t kv_rows, int d, DType t);

// Padded [B, lmax, row] key and value images laid out in a pool of pages of page_size rows:
// the sequences' pages shuffled over the pool, `spare` more pages unused, and every slot no
// sequence fills left at `poison` (a kernel that reads past a length shows it). table is
// [B, per_seq]: sequence b's page i.
struct HostPages {
  std::vector<uint16_t> k, v;
  std::vector<int> table;
  int per_seq = 0;
};
HostPages ScatterIntoPages(const std::vector<uint16_t>& kh, const std::vector<uint16_t>& vh,
                           const std::vector<int>& lens, int lmax, size_t row, int page_size, int spare,
                           uint16_t poison, std::mt19937_64& rng);

// The float64 reference's name for the algorithm, with the window the inputs use.
ref::Family RefFamilyOf(const Algorithm& a, int window);

}  // namespace parallax::search::internal
