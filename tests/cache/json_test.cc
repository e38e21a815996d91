// JSON conversions of the row structs (what the CLI prints with --json).
#include "parallax/cache/json.h"

#include <nlohmann/json.hpp>

#include "test_util.h"

namespace parallax::cache::testing {
namespace {

TEST(CacheJsonTest, MeasurementRoundTrip) {
  Measurement m = OkMeasurement(1, 2, 3, 1700000000123, 12.5);
  m.run_id = 7;
  m.variant_key = kVariantKeyA;
  nlohmann::json j = m;
  EXPECT_EQ(j["status"], "ok");
  EXPECT_EQ(j["run_id"], 7);
  Measurement back = j.get<Measurement>();
  EXPECT_EQ(back.run_id, m.run_id);
  EXPECT_EQ(back.median_us, m.median_us);
  EXPECT_EQ(back.measured_at, m.measured_at);
  EXPECT_EQ(back.variant_key, m.variant_key);

  m.status = MeasurementStatus::kWrong;
  m.median_us.reset();
  m.run_id.reset();
  j = m;
  EXPECT_TRUE(j["median_us"].is_null());
  EXPECT_TRUE(j["run_id"].is_null());
  back = j.get<Measurement>();
  EXPECT_EQ(back.status, MeasurementStatus::kWrong);
  EXPECT_FALSE(back.median_us.has_value());
}

TEST(CacheJsonTest, OtherRowsRoundTrip) {
  DeviceInfo d = TestDevice();
  EXPECT_EQ(nlohmann::json(d).get<DeviceInfo>().mem_bytes, d.mem_bytes);

  BestConfig b{"fp", kProblemKey, "seq4096", kVariantKeyA, 3.25, 3, 13000, 99};
  BestConfig b2 = nlohmann::json(b).get<BestConfig>();
  EXPECT_EQ(b2.variant_key, b.variant_key);
  EXPECT_EQ(b2.updated_at, 99);

  BinaryEntry e;
  e.key = "k";
  e.cubin = {0, 1, 2, 255, 0};
  nlohmann::json ej = e;
  EXPECT_EQ(ej["cubin_bytes"], 5);
  EXPECT_EQ(ej.get<BinaryEntry>().cubin, e.cubin);

  RunInfo r;
  r.device_id = 4;
  r.status = RunStatus::kCancelled;
  r.params = {{"budget", 10}};
  nlohmann::json rj = r;
  EXPECT_EQ(rj["status"], "cancelled");
  EXPECT_TRUE(rj["finished_at"].is_null());
  RunInfo r2 = rj.get<RunInfo>();
  EXPECT_EQ(r2.status, RunStatus::kCancelled);
  EXPECT_EQ(r2.params["budget"], 10);

  EXPECT_THROW(nlohmann::json({{"status", "exploded"}, {"device_id", 1}}).get<RunInfo>(),
               std::invalid_argument);
}

TEST(CacheJsonTest, ReportsSerialize) {
  ImportStats stats;
  stats.measurements.inserted = 3;
  nlohmann::json j = stats;
  EXPECT_EQ(j["measurements"]["inserted"], 3);
  VerifyReport report;
  report.ok = true;
  report.row_counts["devices"] = 2;
  j = report;
  EXPECT_EQ(j["row_counts"]["devices"], 2);
}

}  // namespace
}  // namespace parallax::cache::testing
