// The key checks `parallax db import` and the service's ImportResults pass to the cache:
// served keys are production variants, recorded history may hold the tuner's planted test
// variants, problem keys are canonical.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "parallax/cache/store.h"
#include "parallax/codegen/variant.h"
#include "parallax/search/import_checks.h"
#include "parallax/search/tune_args.h"
#include "parallax/search/tuner.h"

namespace parallax::search {
namespace {

constexpr const char* kKey = "decode-bf16-d128-h32x8-contig-nowin.learned-plain.mma-n64-w4-s2-splitauto-g4";
constexpr const char* kProblem = "decode-bf16-d128-h32x8-contig-nowin.learned-plain";

TEST(ImportChecks, ServedKeysMustBeProductionVariants) {
  const cache::ImportOptions o = ImportChecks();
  EXPECT_TRUE(o.check_variant_key(kKey).ok());
  EXPECT_FALSE(o.check_variant_key(std::string(kKey) + "-testhang").ok());
  EXPECT_FALSE(o.check_variant_key(std::string(kKey) + "-testfault").ok());
  EXPECT_FALSE(o.check_variant_key("decode-bf16-d128").ok());
  EXPECT_TRUE(o.check_recorded_variant_key(std::string(kKey) + "-testhang").ok());
  EXPECT_FALSE(o.check_recorded_variant_key("not.a.key").ok());
}

TEST(ImportChecks, ProblemKeysMustBeCanonical) {
  const cache::ImportOptions o = ImportChecks();
  EXPECT_TRUE(o.check_problem_key(kProblem).ok());
  EXPECT_FALSE(o.check_problem_key(kKey).ok());  // a variant key is not a problem key
  EXPECT_FALSE(o.check_problem_key("decode-bf16-d128-h32x8-contig-nowin").ok());
  EXPECT_FALSE(o.check_problem_key("decode-bf16-d0128-h32x8-contig-nowin.learned-plain").ok());
  EXPECT_FALSE(o.check_problem_key("decode-bf16-d128-h32x7-contig-nowin.learned-plain").ok());
  TuneArgs a;
  a.preset = "qwen3-0.6b";
  absl::StatusOr<TuneRequest> req = MakeTuneRequest(a);
  ASSERT_TRUE(req.ok()) << req.status();
  const std::string key = ProblemKey(req->problem, req->algorithm);
  auto parsed = ParseProblemKey(key);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(ProblemKey(parsed->first, parsed->second), key);
}

class ImportChecksFile : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::string(PLX_BINARY_DIR) + "/search_import_checks_" + std::to_string(::getpid()) + "_" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override {
    if (!HasFailure()) std::filesystem::remove_all(dir_);
  }
  // A tuning history with a planted test variant measured, and a best config for `served`.
  std::string MakeSource(const std::string& served) {
    const std::string path = dir_ + "/src.db";
    auto store = cache::Store::Open(path);
    EXPECT_TRUE(store.ok());
    cache::DeviceInfo d;
    d.fingerprint = "h200-test";
    const int64_t device = *(*store)->UpsertDevice(d);
    const int64_t problem = *(*store)->UpsertProblem(kProblem, nlohmann::json::object());
    const int64_t planted = *(*store)->UpsertVariant(std::string(kKey) + "-testhang", 4);
    cache::Measurement m;
    m.device_id = device;
    m.problem_id = problem;
    m.variant_id = planted;
    m.bucket = "b1-l4096";
    m.status = cache::MeasurementStatus::kTimeout;
    m.generator_version = 4;
    EXPECT_TRUE((*store)->RecordMeasurement(m).ok());
    EXPECT_TRUE((*store)->SetBestConfig({"h200-test", kProblem, "b1-l4096", served, 12.5, 4, 13000, 0}).ok());
    return path;
  }
  std::string dir_;
};

TEST_F(ImportChecksFile, HistoryOfPlantedVariantsImports) {
  const std::string src = MakeSource(kKey);
  auto dest = cache::Store::Open(dir_ + "/dest.db");
  ASSERT_TRUE(dest.ok());
  absl::StatusOr<cache::ImportStats> stats = (*dest)->Import(src, ImportChecks());
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->measurements.inserted, 1);
  EXPECT_EQ(stats->best_configs.inserted, 1);
}

TEST_F(ImportChecksFile, AServedTestVariantRejectsTheFile) {
  const std::string src = MakeSource(std::string(kKey) + "-testfault");
  auto dest = cache::Store::Open(dir_ + "/dest.db");
  ASSERT_TRUE(dest.ok());
  absl::StatusOr<cache::ImportStats> stats = (*dest)->Import(src, ImportChecks());
  EXPECT_EQ(stats.status().code(), absl::StatusCode::kInvalidArgument) << stats.status();
  EXPECT_NE(stats.status().message().find("best_configs row 1: variant_key"), std::string::npos)
      << stats.status();
  EXPECT_NE(stats.status().message().find("test-only variant"), std::string::npos) << stats.status();
  auto best = (*dest)->ListBestConfigs();
  ASSERT_TRUE(best.ok());
  EXPECT_TRUE(best->empty());
}

}  // namespace
}  // namespace parallax::search
