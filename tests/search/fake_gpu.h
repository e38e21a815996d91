// H100-, H200- and A100-shaped DeviceInfos for tests without a GPU (the tuner, its strategies and the
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

// An H200: the H100's SMs, limits and L2, 141 GB of memory (140 GiB as the driver reports
// it, known_devices.cc), so another device key on the same arch.
inline DeviceInfo FakeH200(int ordinal = 0, std::string name = "NVIDIA H200") {
  DeviceInfo d = FakeH100(ordinal, std::move(name));
  d.mem_bytes = int64_t(140) << 30;
  return d;
}

// An A100-SXM4-80GB: sm_80, 108 SMs, 164 KB of shared memory per SM.
inline DeviceInfo FakeA100(int ordinal = 0, std::string name = "NVIDIA A100-SXM4-80GB") {
  DeviceInfo d = FakeH100(ordinal, std::move(name));
  d.cc_major = 8;
  d.sm_count = 108;
  d.max_smem_per_block_optin = 163 * 1024;
  d.smem_per_sm = 164 * 1024;
  d.l2_bytes = 40 << 20;
  return d;
}

}  // namespace parallax::testing
