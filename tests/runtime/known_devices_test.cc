// The GPUs known by name (known_devices.h): found by any spelling of a name or alias, and
// described as the driver would on them, down to the tuned-config key.
#include "parallax/runtime/known_devices.h"

#include <gtest/gtest.h>


#include "absl/strings/str_split.h"
#include "parallax/cache/device_key.h"

namespace parallax {
namespace {

TEST(KnownDevicesTest, NamesAndAliasesInAnySpelling) {
  for (const char* n : {"H200", "h200", "NVIDIA H200", "nvidia-h200", " H200 "}) {
    const KnownDevice* k = FindKnownDevice(n);
    ASSERT_NE(k, nullptr) << n;
    EXPECT_STREQ(k->name, "NVIDIA H200") << n;
  }
  for (const char* n : {"H100", "H100 SXM", "h100-sxm", "NVIDIA H100 80GB HBM3"})
    EXPECT_STREQ(FindKnownDevice(n)->name, "NVIDIA H100 80GB HBM3") << n;
  for (const char* n : {"A100 80GB", "a100", "A100-SXM4-80GB", "NVIDIA A100-SXM4-80GB"})
    EXPECT_STREQ(FindKnownDevice(n)->name, "NVIDIA A100-SXM4-80GB") << n;
  EXPECT_STREQ(FindKnownDevice("H100 PCIe")->name, "NVIDIA H100 PCIe");
  EXPECT_EQ(FindKnownDevice("Voodoo 5"), nullptr);
  EXPECT_EQ(FindKnownDevice(""), nullptr);
  EXPECT_EQ(FindKnownDevice("NVIDIA"), nullptr);
}

TEST(KnownDevicesTest, EveryNameAndAliasIsOneDeviceOnly) {
  for (const KnownDevice& k : KnownDevices()) {
    EXPECT_EQ(FindKnownDevice(k.name), &k) << k.name;
    for (absl::string_view a : absl::StrSplit(k.aliases, ','))
      EXPECT_EQ(FindKnownDevice(std::string(a)), &k) << k.name << ": alias '" << a << "' finds another device";
    EXPECT_GE(k.cc_major * 10 + k.cc_minor, 80) << k.name;
    EXPECT_GT(k.sm_count, 0) << k.name;
    EXPECT_GT(k.mem_gib, 0) << k.name;
  }
}

// The H100 this project tuned on reported "NVIDIA H100 80GB HBM3|sm_90|sms=132|mem=81079MiB|
// driver=13000|nvrtc=13.0" (bench/results/tune-qwen3-0.6b-h100-2026-11-23.json): the table's
// entry describes that GPU under the key its tuned configs have, whatever the driver.
TEST(KnownDevicesTest, MeasuredEntriesGiveTheRealDevicesKey) {
  const DeviceInfo h100 = DeviceInfoOf(*FindKnownDevice("H100"), "13.0");
  EXPECT_EQ(h100.fingerprint(),
            cache::DeviceKey("NVIDIA H100 80GB HBM3|sm_90|sms=132|mem=81079MiB|driver=13000|nvrtc=13.0"));
  DeviceInfo real = h100;
  real.mem_bytes = 85017493504;  // what cuDeviceTotalMem said there
  real.driver_version = 13010;
  EXPECT_EQ(real.fingerprint(), h100.fingerprint());
  const DeviceInfo h200 = DeviceInfoOf(*FindKnownDevice("H200"), "13.0");
  EXPECT_EQ(h200.fingerprint(), "NVIDIA H200|sm_90|sms=132|mem=140GiB|nvrtc=13.0");
  EXPECT_EQ(h200.arch(), "sm_90");
  EXPECT_EQ(h200.driver_version, 0);
}

}  // namespace
}  // namespace parallax
