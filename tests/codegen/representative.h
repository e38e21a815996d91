// The representative variant set: 64 keys that cover each (mode x path x probe x affine x
// window) combination twice, with the dtype differing between the two and head dim, GQA group
// (1, 3, 4, 5, 8) and (for decode) contiguous/paged KV rotating, so every pair of those axes
// meets. Schedules come from a short list of typical ones per mode and path. Used by the
// NVRTC compile test and by the PTX digest tool (scripts/ptx-digests.sh).
#pragma once

#include <string>
#include <vector>

namespace parallax {

std::vector<std::string> RepresentativeKeys();

}  // namespace parallax
