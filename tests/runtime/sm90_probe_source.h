// The sm_90a probe kernel's source (sm90_probe.cuh) with the primitives it exercises, read
// from the source tree: what NVRTC compiles in the CPU and GPU probe tests.
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace parallax::testing {

absl::StatusOr<std::string> Sm90ProbeSource();

}  // namespace parallax::testing
