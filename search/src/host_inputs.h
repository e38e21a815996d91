// Model-like random inputs on the host (the reduced-shape verification, checked against the
// float64 reference), as tests/runtime/gpu_harness.cc makes them: q, r and k rows
// RMS-normalised, v standard normal, all rounded to the 16-bit dtype so the reference sees
// exactly what the kernel reads.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "parallax/codegen/variant.h"

namespace parallax::search::internal {

uint16_t ToHalfBits(double x, DType t);
double FromHalfBits(uint16_t h, DType t);
uint16_t PoisonBits(DType t);  // a NaN payload: unwritten outputs show

std::vector<double> RandomRows(std::mt19937_64& rng, size_t rows, int d, bool rms_normalise);
// Rounds x to the dtype in place and returns the 16-bit images.
std::vector<uint16_t> Quantise(std::vector<double>& x, DType t);

}  // namespace parallax::search::internal
