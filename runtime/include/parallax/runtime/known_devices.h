// GPUs this project knows by name, so a tool without that GPU at hand (`parallax remote get
// --device-name H200`, `parallax warmup --device-name H200`) can describe one from its name
// alone: the identity tuned configs are filed under (DeviceInfo::fingerprint(): name, arch,
// SM count, memory in GiB, NVRTC) comes out as the driver would report it on that GPU.
#pragma once

#include <span>
#include <string>

#include "parallax/runtime/device.h"

namespace parallax {

struct KnownDevice {
  const char* name;     // exactly as the driver reports it (cuDeviceGetName)
  const char* aliases;  // comma-separated short names, e.g. "h100,h100 sxm"
  int cc_major, cc_minor;
  int sm_count;
  int mem_gib;          // cuDeviceTotalMem rounded to whole GiB, as the fingerprint has it
  const char* source;   // "measured" (seen on this project's hosts) or "spec" (NVIDIA's data)
};

std::span<const KnownDevice> KnownDevices();

// By the driver's name or an alias; case, spaces, '-' and '_' and a leading "NVIDIA" do not
// matter ("h200", "H100 SXM", "nvidia-a100-sxm4-80gb"). nullptr when unknown.
const KnownDevice* FindKnownDevice(const std::string& name);

// The DeviceInfo the driver would give on that GPU (no driver version: not part of the
// identity), with this build's NVRTC unless nvrtc_version is given.
DeviceInfo DeviceInfoOf(const KnownDevice& k, const std::string& nvrtc_version = "");

}  // namespace parallax
