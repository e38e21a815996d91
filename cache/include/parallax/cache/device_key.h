#pragma once
// The identity tuned results are filed under: what changes a kernel's speed, not the driver
// patch level.
//
// A device fingerprint is '|'-separated fields, the GPU's name first:
//   "NVIDIA H200|sm_90|sms=132|mem=140GiB|nvrtc=13.0"
// (name, arch, SM count, memory rounded to whole GiB, NVRTC version; DeviceInfo::fingerprint()
// in the runtime writes it). Files written before schema v3 carried the driver and the memory
// in MiB: "NVIDIA H200|sm_90|sms=132|mem=143155MiB|driver=13000|nvrtc=13.0". DeviceKey maps
// either form to the current one, so every lookup by fingerprint (Store's filters, which use
// it through the SQL function parallax_device_key) finds rows of both, and the v3 migration
// rewrites old rows with it. A driver update thus keeps every tuned config; the compiled
// binaries do not depend on the driver either (runtime/binary_cache.h).

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace parallax::cache {

// Drops a "driver=..." field and turns "mem=<N>MiB" into "mem=<round(N / 1024)>GiB"; other
// fields and their order are kept. A string that is not a fingerprint comes back unchanged.
std::string DeviceKey(absl::string_view fingerprint);

// Whole GiB, rounded to nearest (a MiB-exact half rounds up): robust to the few MiB the
// driver's reservation moves between versions and ECC settings.
inline int64_t MemoryGiB(int64_t mem_bytes) { return ((mem_bytes >> 20) + 512) >> 10; }

}  // namespace parallax::cache
