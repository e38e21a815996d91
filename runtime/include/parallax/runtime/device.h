// What the runtime needs to know about a GPU, and its fingerprint for the tuning database.
#pragma once

#include <cuda.h>

#include <string>

#include "absl/status/statusor.h"

namespace parallax {

struct DeviceInfo {
  int ordinal = 0;
  std::string name;
  int cc_major = 0, cc_minor = 0;
  int sm_count = 0;
  int max_smem_per_block_optin = 0;
  int smem_per_sm = 0;
  int l2_bytes = 0;
  int64_t mem_bytes = 0;
  int clock_khz = 0;
  int mem_clock_khz = 0;
  int driver_version = 0;  // e.g. 13000
  std::string nvrtc_version;

  std::string arch() const;         // "sm_90"
  // The tuning DB's device identity: "NVIDIA H200|sm_90|sms=132|mem=140GiB|nvrtc=13.0"
  // (name|arch|SMs|memory in GiB|NVRTC); no driver version (cache/device_key.h).
  std::string fingerprint() const;
};

// Unavailable when there is no driver or device (tests skip on that).
absl::StatusOr<DeviceInfo> QueryDevice(int ordinal);

}  // namespace parallax
