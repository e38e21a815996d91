#include "test_util.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "absl/strings/str_cat.h"
#include "parallax/cache/db.h"

namespace parallax::cache::testing {

void CacheTest::SetUp() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::filesystem::path root = std::filesystem::path(PLX_BINARY_DIR) / "test-tmp" / "cache";
  std::filesystem::create_directories(root);
  std::string pattern =
      (root / absl::StrCat(info->test_suite_name(), ".", info->name(), ".XXXXXX")).string();
  ASSERT_NE(mkdtemp(pattern.data()), nullptr) << "mkdtemp " << pattern;
  dir_ = pattern;
}

void CacheTest::TearDown() {
  if (!HasFailure() && !dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

std::string CacheTest::PathFor(absl::string_view file_name) const {
  return (std::filesystem::path(dir_) / std::string(file_name)).string();
}

DeviceInfo TestDevice(std::string fingerprint) {
  DeviceInfo d;
  d.fingerprint = std::move(fingerprint);
  d.name = "NVIDIA H100 80GB HBM3";
  d.sm_count = 132;
  d.cc_major = 9;
  d.cc_minor = 0;
  d.clock_khz = 1980000;
  d.mem_bytes = int64_t{85} * 1024 * 1024 * 1024;
  d.l2_bytes = 50 * 1024 * 1024;
  d.driver_version = 13000;
  d.nvrtc_version = 13000;
  return d;
}

absl::StatusOr<Ids> SeedEntities(Store& store, std::string fingerprint) {
  Ids ids;
  absl::StatusOr<int64_t> id = store.UpsertDevice(TestDevice(std::move(fingerprint)));
  if (!id.ok()) return id.status();
  ids.device = *id;
  id = store.UpsertProblem(kProblemKey, {{"phase", "decode"}, {"head_dim", 128}});
  if (!id.ok()) return id.status();
  ids.problem = *id;
  id = store.UpsertVariant(kVariantKeyA, 3);
  if (!id.ok()) return id.status();
  ids.variant_a = *id;
  id = store.UpsertVariant(kVariantKeyB, 3);
  if (!id.ok()) return id.status();
  ids.variant_b = *id;
  return ids;
}

Measurement OkMeasurement(int64_t device, int64_t problem, int64_t variant, int64_t measured_at,
                          double median_us, int generator_version, int nvrtc_version) {
  Measurement m;
  m.device_id = device;
  m.problem_id = problem;
  m.variant_id = variant;
  m.bucket = "seq4096";
  m.status = MeasurementStatus::kOk;
  m.median_us = median_us;
  m.min_us = median_us * 0.95;
  m.max_us = median_us * 1.1;
  m.reps = 50;
  m.rel_error = 1e-3;
  m.measured_at = measured_at;
  m.generator_version = generator_version;
  m.nvrtc_version = nvrtc_version;
  return m;
}

std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void WriteBytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

absl::StatusOr<int64_t> CountRows(const std::string& path, absl::string_view table) {
  absl::StatusOr<Db> db = Db::Open(path);
  if (!db.ok()) return db.status();
  return db->QueryInt(absl::StrCat("SELECT COUNT(*) FROM ", table));
}

}  // namespace parallax::cache::testing
