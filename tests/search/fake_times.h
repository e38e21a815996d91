// What the fake worker answers, shared with the tests that check the tuner's choices.
#pragma once

#include <cstdint>
#include <string>

#include "absl/strings/match.h"

namespace parallax::search::testing {

// A deterministic time per key (FNV-1a), 10..60 us.
inline double FakeTimeUs(const std::string& key) {
  uint64_t h = 1469598103934665603ull;
  for (char c : key) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
  return 10.0 + static_cast<double>(h % 5000) / 100.0;
}

// Keys the fake worker reports as wrong output (a verification failure, not a crash).
inline bool FakeWrong(const std::string& key) { return absl::StrContains(key, "fma-n32-w1-s1"); }

}  // namespace parallax::search::testing
