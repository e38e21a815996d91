#include "parallax/runtime/device.h"

#include "absl/strings/str_cat.h"
#include "parallax/cache/device_key.h"
#include "parallax/runtime/cuda_driver.h"
#include "parallax/runtime/nvrtc_compiler.h"

namespace parallax {

std::string DeviceInfo::arch() const { return absl::StrCat("sm_", cc_major, cc_minor); }

// What changes a kernel's speed, in cache::DeviceKey's form: not the driver (a patch release
// must not discard tuning), memory in whole GiB (the driver's reservation moves by MiB).
std::string DeviceInfo::fingerprint() const {
  return absl::StrCat(name, "|", arch(), "|sms=", sm_count, "|mem=", cache::MemoryGiB(mem_bytes),
                      "GiB|nvrtc=", nvrtc_version);
}

absl::StatusOr<DeviceInfo> QueryDevice(int ordinal) {
  absl::StatusOr<const cu::Api*> api = cu::Driver();
  if (!api.ok()) return api.status();
  const cu::Api* d = *api;
  int count = 0;
  PLX_CU_RETURN_IF_ERROR(d, cuDeviceGetCount(&count));
  if (ordinal < 0 || ordinal >= count)
    return absl::InvalidArgumentError(
        absl::StrCat("device=", ordinal, ": only ", count, " CUDA device(s) visible"));
  CUdevice dev;
  PLX_CU_RETURN_IF_ERROR(d, cuDeviceGet(&dev, ordinal));
  DeviceInfo info;
  info.ordinal = ordinal;
  char name[256] = {};
  PLX_CU_RETURN_IF_ERROR(d, cuDeviceGetName(name, sizeof(name), dev));
  info.name = name;
  auto attr = [&](CUdevice_attribute a, int* out) { return d->cuDeviceGetAttribute(out, a, dev); };
  attr(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, &info.cc_major);
  attr(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, &info.cc_minor);
  attr(CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, &info.sm_count);
  attr(CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, &info.max_smem_per_block_optin);
  attr(CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_MULTIPROCESSOR, &info.smem_per_sm);
  attr(CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE, &info.l2_bytes);
  attr(CU_DEVICE_ATTRIBUTE_CLOCK_RATE, &info.clock_khz);
  attr(CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE, &info.mem_clock_khz);
  size_t mem = 0;
  PLX_CU_RETURN_IF_ERROR(d, cuDeviceTotalMem_v2(&mem, dev));
  info.mem_bytes = static_cast<int64_t>(mem);
  PLX_CU_RETURN_IF_ERROR(d, cuDriverGetVersion(&info.driver_version));
  info.nvrtc_version = NvrtcVersion();
  return info;
}

}  // namespace parallax
