#include "parallax/runtime/known_devices.h"

#include <array>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "parallax/runtime/nvrtc_compiler.h"

namespace parallax {
namespace {

// Memory is what cuDeviceTotalMem reports (a little under the marketed size: the driver
// reserves some), rounded to GiB. "measured": the H100 80GB HBM3 (81079 MiB) and the H200
// (name, 132 SMs) on this project's hosts; the rest from NVIDIA's data sheets, memory
// estimated the same way. A wrong entry only costs a DEFAULT answer where EXACT was due;
// --cc/--sms/--mem-mib override any field.
constexpr std::array<KnownDevice, 13> kDevices = {{
    {"NVIDIA H200", "h200,h200 sxm,h200 141gb", 9, 0, 132, 140, "measured"},
    {"NVIDIA H200 NVL", "h200 nvl", 9, 0, 132, 140, "spec"},
    {"NVIDIA H100 80GB HBM3", "h100,h100 sxm,h100 sxm5,h100 80gb", 9, 0, 132, 79, "measured"},
    {"NVIDIA H100 PCIe", "h100 pcie", 9, 0, 114, 79, "spec"},
    {"NVIDIA H100 NVL", "h100 nvl", 9, 0, 132, 93, "spec"},
    {"NVIDIA GH200 480GB", "gh200", 9, 0, 132, 94, "spec"},
    {"NVIDIA A100-SXM4-80GB", "a100,a100 80gb,a100 sxm,a100 sxm4", 8, 0, 108, 79, "spec"},
    {"NVIDIA A100-SXM4-40GB", "a100 40gb,a100 sxm4 40gb", 8, 0, 108, 40, "spec"},
    {"NVIDIA A100 80GB PCIe", "a100 pcie,a100 80gb pcie", 8, 0, 108, 79, "spec"},
    {"NVIDIA L40S", "l40s", 8, 9, 142, 44, "spec"},
    {"NVIDIA L4", "l4", 8, 9, 58, 22, "spec"},
    {"NVIDIA A10", "a10", 8, 6, 72, 22, "spec"},
    {"NVIDIA GeForce RTX 4090", "rtx 4090,4090", 8, 9, 128, 24, "spec"},
}};

std::string Normal(absl::string_view s) {
  std::string out;
  for (char c : s)
    if (absl::ascii_isalnum(static_cast<unsigned char>(c))) out.push_back(absl::ascii_tolower(c));
  if (absl::StartsWith(out, "nvidia")) out.erase(0, 6);
  return out;
}

}  // namespace

std::span<const KnownDevice> KnownDevices() { return kDevices; }

const KnownDevice* FindKnownDevice(const std::string& name) {
  const std::string want = Normal(name);
  if (want.empty()) return nullptr;
  for (const KnownDevice& k : kDevices) {
    if (Normal(k.name) == want) return &k;
    for (absl::string_view a : absl::StrSplit(k.aliases, ','))
      if (Normal(a) == want) return &k;
  }
  return nullptr;
}

DeviceInfo DeviceInfoOf(const KnownDevice& k, const std::string& nvrtc_version) {
  DeviceInfo d;
  d.name = k.name;
  d.cc_major = k.cc_major;
  d.cc_minor = k.cc_minor;
  d.sm_count = k.sm_count;
  d.mem_bytes = int64_t{k.mem_gib} << 30;
  d.nvrtc_version = nvrtc_version.empty() ? NvrtcVersion() : nvrtc_version;
  return d;
}

}  // namespace parallax
