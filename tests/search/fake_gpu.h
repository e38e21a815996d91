// An H100-shaped DeviceInfo for tests without a GPU (the tuner, its strategies and the
// service's search backend). The name is part of the fingerprint, so tests that must not
// collide with a real device's cache rows pass their own.
#pragma once

#include <cstdint>
#include <string>

#include "parallax/runtime/device.h"

namespace parallax::testing {

inline DeviceInfo FakeH100(int ordinal = 0, std::string name = "NVIDIA H100 80GB HBM3") {
  DeviceInfo d;
  d.ordinal = ordinal;
  d.name = std::move(name);
  d.cc_major = 9;
  d.cc_minor = 0;
  d.sm_count = 132;
  d.max_smem_per_block_optin = 227 * 1024;
  d.smem_per_sm = 228 * 1024;
  d.l2_bytes = 50 << 20;
  d.mem_bytes = int64_t(80) << 30;
  d.driver_version = 13000;
  d.nvrtc_version = "13.0";
  return d;
}

}  // namespace parallax::testing
