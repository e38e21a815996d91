#pragma once
// Shared fixtures for the cache tests: a fresh directory per test and canned rows.

#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "parallax/cache/schema.h"
#include "parallax/cache/store.h"

#define PLX_CONCAT_INNER(a, b) a##b
#define PLX_CONCAT(a, b) PLX_CONCAT_INNER(a, b)

#define ASSERT_OK(expr)                           \
  do {                                            \
    const absl::Status plx_status_ = (expr);      \
    ASSERT_TRUE(plx_status_.ok()) << plx_status_; \
  } while (0)

#define EXPECT_OK(expr)                           \
  do {                                            \
    const absl::Status plx_status_ = (expr);      \
    EXPECT_TRUE(plx_status_.ok()) << plx_status_; \
  } while (0)

#define ASSERT_OK_AND_ASSIGN(lhs, expr) \
  ASSERT_OK_AND_ASSIGN_IMPL(PLX_CONCAT(plx_or_, __LINE__), lhs, expr)
#define ASSERT_OK_AND_ASSIGN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                              \
  ASSERT_TRUE(tmp.ok()) << tmp.status();          \
  lhs = std::move(*tmp)

namespace parallax::cache::testing {

// Realistic keys, so nothing relies on short toy strings.
inline constexpr const char* kProblemKey = "decode-bf16-d128-h32x8-contig-nowin";
inline constexpr const char* kVariantKeyA =
    "decode-bf16-d128-h32x8-contig-nowin.learned-plain.mma-n64-w4-s2-splitauto-g4";
inline constexpr const char* kVariantKeyB =
    "decode-bf16-d128-h32x8-contig-nowin.learned-plain.mma-n128-w8-s3-split4-g4";

// The schema version this build creates; test-only migrations continue from it.
inline int BuiltinVersion() { return static_cast<int>(BuiltinMigrations().size()); }

class CacheTest : public ::testing::Test {
 protected:
  // A new directory under PLX_BINARY_DIR; removed after a passing test, kept for a look
  // after a failing one.
  void SetUp() override;
  void TearDown() override;
  std::string PathFor(absl::string_view file_name) const;

  std::string dir_;
};

// The ids of one device/problem/variant set inserted by SeedEntities.
struct Ids {
  int64_t device = 0;
  int64_t problem = 0;
  int64_t variant_a = 0;
  int64_t variant_b = 0;
};

DeviceInfo TestDevice(std::string fingerprint = "h100-sxm-132sm-drv580");
absl::StatusOr<Ids> SeedEntities(Store& store, std::string fingerprint = "h100-sxm-132sm-drv580");
Measurement OkMeasurement(int64_t device, int64_t problem, int64_t variant, int64_t measured_at,
                          double median_us, int generator_version = 3, int nvrtc_version = 13000);

std::string ReadBytes(const std::string& path);
void WriteBytes(const std::string& path, const std::string& bytes);
// COUNT(*) through a separate raw connection.
absl::StatusOr<int64_t> CountRows(const std::string& path, absl::string_view table);

}  // namespace parallax::cache::testing
