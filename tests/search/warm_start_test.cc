// Warm start across GPU models and databases (warm_start.h), with no GPU: which tuned device
// is nearest, which (device, bucket) sources seed a unit and in which order, keys that are not
// candidates here dropped (the next source serving instead), the unit's own current result
// left to resume, and seed databases read, never written. (The tuner end to end with a seeded
// run: tuner_test.cc, TunerTest.*Seed*; the effect on the search: strategy_test.cc, WarmStart.)
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "fake_gpu.h"
#include "parallax/cache/device_key.h"
#include "parallax/cache/store.h"
#include "parallax/runtime/known_devices.h"
#include "parallax/search/tuning_db.h"
#include "parallax/search/warm_start.h"
#include "tuned_db.h"

namespace parallax::search {
namespace {

using parallax::testing::FakeA100;
using parallax::testing::FakeH100;
using parallax::testing::FakeH200;
using testing::WriteTuned;

constexpr const char* kProblem = "decode-bf16-d128-h16x8-contig-nowin.learned-plain";
std::string K(const std::string& schedule) { return std::string(kProblem) + "." + schedule; }
std::string Dev(const DeviceInfo& d) { return cache::DeviceKey(d.fingerprint()); }
const SeedCheck kAll = [](const std::string&) -> std::optional<std::string> { return std::nullopt; };

// Known GPUs (runtime/known_devices.h) by their distance from `target`, names only.
std::vector<std::string> ByDistance(const char* target) {
  const cache::DeviceInfo t = ToCacheDevice(DeviceInfoOf(*FindKnownDevice(target), "13.0"));
  std::vector<std::pair<DeviceDistance, std::string>> all;
  for (const KnownDevice& k : KnownDevices())
    if (std::string(k.name) != t.name)
      all.emplace_back(DistanceBetween(t, ToCacheDevice(DeviceInfoOf(k, "13.0"))), k.name);
  std::stable_sort(all.begin(), all.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<std::string> out;
  for (auto& [d, n] : all) out.push_back(n);
  return out;
}

TEST(DeviceDistance, SameComputeCapabilityThenFamilyThenSmsThenMemory) {
  const std::vector<std::string> h200 = ByDistance("H200");
  ASSERT_GE(h200.size(), 8u);
  // sm_90 first: 132 SMs by memory (140 GiB: the NVL's 140, GH200's 94, the H100 NVL's 93,
  // the H100 SXM's 79), then the H100 PCIe (114 SMs); then the sm_8x parts by SM count.
  EXPECT_EQ(std::vector<std::string>(h200.begin(), h200.begin() + 8),
            (std::vector<std::string>{"NVIDIA H200 NVL", "NVIDIA GH200 480GB", "NVIDIA H100 NVL",
                                      "NVIDIA H100 80GB HBM3", "NVIDIA H100 PCIe", "NVIDIA GeForce RTX 4090",
                                      "NVIDIA L40S", "NVIDIA A100-SXM4-80GB"}));
  // An A10 (sm_86, 72 SMs): nothing shares its compute capability; the sm_8x family by SM
  // count (L4 58, A100 108, RTX 4090 128, L40S 142), the sm_90 parts last.
  const std::vector<std::string> a10 = ByDistance("A10");
  EXPECT_EQ(a10.front(), "NVIDIA L4");
  EXPECT_LT(std::find(a10.begin(), a10.end(), "NVIDIA A100-SXM4-80GB"),
            std::find(a10.begin(), a10.end(), "NVIDIA L40S"));
  EXPECT_LT(std::find(a10.begin(), a10.end(), "NVIDIA L40S"), std::find(a10.begin(), a10.end(), "NVIDIA H100 PCIe"));
  // An L4 (sm_89): the other sm_89 parts first even though the A10 is closer in SMs.
  const std::vector<std::string> l4 = ByDistance("L4");
  EXPECT_EQ(std::vector<std::string>(l4.begin(), l4.begin() + 2),
            (std::vector<std::string>{"NVIDIA GeForce RTX 4090", "NVIDIA L40S"}));
  EXPECT_EQ(l4[2], "NVIDIA A10");

  const DeviceDistance d = DistanceBetween(ToCacheDevice(FakeH200()), ToCacheDevice(FakeA100()));
  EXPECT_EQ(d.arch, 3);  // 2 + one major apart
  EXPECT_EQ(d.sms, 24);
  EXPECT_EQ(d.mem_gib, 60);
}

class WarmStartTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::string(PLX_BINARY_DIR) + "/search_warm_start_test_" + std::to_string(::getpid()) + "_" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    target_ = *cache::Store::Open(dir_ + "/target.db");
  }
  void TearDown() override {
    target_.reset();
    if (!HasFailure()) std::filesystem::remove_all(dir_);
  }
  std::unique_ptr<cache::Store> NewDb(const std::string& name) { return *cache::Store::Open(dir_ + "/" + name); }
  absl::StatusOr<WarmStartPick> Pick(const std::vector<std::string>& seed_dbs, const DeviceInfo& dev,
                                     const std::string& bucket, const SeedCheck& check = kAll, int k = 4) {
    absl::StatusOr<std::unique_ptr<WarmStart>> w = WarmStart::Open(*target_, seed_dbs);
    if (!w.ok()) return w.status();
    return (*w)->Pick(ToCacheDevice(dev), kProblem, bucket, kGeneratorVersion, check, k);
  }

  std::string dir_;
  std::unique_ptr<cache::Store> target_;
};

// The tuned database holds this GPU's neighbour bucket and an A100's exact bucket; a seed
// database an H100's exact and a neighbour bucket. The H100 is nearer than the A100, its exact
// bucket beats its neighbour, and an exact bucket of another model goes before a neighbour
// bucket of this one: seeds alternate H100 b8-l4096, this GPU's b8-l1024.
TEST_F(WarmStartTest, NearestOtherModelsExactBucketThenThisModelsNeighbourInterleaved) {
  WriteTuned(*target_, FakeH200(), kProblem, "b8-l1024", {K("mma-n64-w4-s3-splitauto-g2"), K("mma-n64-w2-s3-splitauto-g2")});
  WriteTuned(*target_, FakeA100(), kProblem, "b8-l4096", {K("mma-n32-w2-s2-splitauto-g2")});
  {
    auto seed = NewDb("h100.db");
    WriteTuned(*seed, FakeH100(), kProblem, "b8-l4096",
               {K("mma-n128-w4-s3-splitauto-g1"), K("mma-n128-w4-s3-split8-g1"), K("mma-n128-w4-s2-splitauto-g1")});
    WriteTuned(*seed, FakeH100(), kProblem, "b8-l8192", {K("mma-n256-w4-s1-splitauto-g2")});
  }
  absl::StatusOr<WarmStartPick> p = Pick({dir_ + "/h100.db"}, FakeH200(), "b8-l4096");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->seeds, (std::vector<std::string>{K("mma-n128-w4-s3-splitauto-g1"), K("mma-n64-w4-s3-splitauto-g2"),
                                                K("mma-n128-w4-s3-split8-g1"), K("mma-n64-w2-s3-splitauto-g2")}));
  ASSERT_EQ(p->origins.size(), 2u);
  EXPECT_EQ(p->origins[0].source.device, Dev(FakeH100()));
  EXPECT_EQ(p->origins[0].source.bucket, "b8-l4096");
  EXPECT_EQ(p->origins[0].source.db, dir_ + "/h100.db");
  EXPECT_EQ(p->origins[0].source.db_index, 1);
  EXPECT_FALSE(p->origins[0].source.same_device);
  EXPECT_EQ(p->origins[0].keys.size(), 2u);
  EXPECT_EQ(p->origins[1].source.device, Dev(FakeH200()));
  EXPECT_EQ(p->origins[1].source.bucket, "b8-l1024");
  EXPECT_TRUE(p->origins[1].source.same_device);
  EXPECT_EQ(p->dropped, 0);
  EXPECT_EQ(Describe(*p), "seeds from NVIDIA H100 80GB HBM3 b8-l4096 in h100.db (2), this GPU model b8-l1024 (2)");
  const nlohmann::json j = ToJson(*p);
  EXPECT_EQ(j["sources"][0]["device"], Dev(FakeH100()));
  EXPECT_EQ(j["sources"][0]["bucket"], "b8-l4096");
  EXPECT_EQ(j["seeds"].size(), 4u);

  // Without the seed database the A100 is the only other model: its exact bucket first.
  p = Pick({}, FakeH200(), "b8-l4096");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->seeds, (std::vector<std::string>{K("mma-n32-w2-s2-splitauto-g2"), K("mma-n64-w4-s3-splitauto-g2"),
                                                K("mma-n64-w2-s3-splitauto-g2")}));
  // Only this GPU model's own neighbour (the rule before other models counted): its 4 best.
  p = Pick({}, FakeH200(), "b8-l2048");
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_EQ(p->origins.size(), 2u);
  EXPECT_TRUE(p->origins[0].source.same_device);  // a neighbour either way: this model first
}

// Keys that are not candidates here are dropped, with the reason kept; a source with none
// left gives way to the next nearest (here: the H100's keys are all refused, the A100 serves).
TEST_F(WarmStartTest, KeysNotValidHereAreDroppedAndTheNextSourceServes) {
  WriteTuned(*target_, FakeH100(), kProblem, "b8-l4096", {K("wgmma-a"), K("wgmma-b")});
  WriteTuned(*target_, FakeA100(), kProblem, "b8-l4096", {K("wgmma-c"), K("mma-n64-w4-s3-splitauto-g2")});
  const SeedCheck no_wgmma = [](const std::string& k) -> std::optional<std::string> {
    if (k.find(".wgmma-") != std::string::npos) return std::string("the family does not run here");
    return std::nullopt;
  };
  absl::StatusOr<WarmStartPick> p = Pick({}, FakeH200(), "b8-l4096", no_wgmma);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->seeds, std::vector<std::string>{K("mma-n64-w4-s3-splitauto-g2")});
  ASSERT_EQ(p->origins.size(), 1u);
  EXPECT_EQ(p->origins[0].source.device, Dev(FakeA100()));
  EXPECT_EQ(p->dropped, 3);
  ASSERT_EQ(p->dropped_why.size(), 3u);
  EXPECT_EQ(p->dropped_why[0], K("wgmma-a") + ": the family does not run here");
  EXPECT_NE(Describe(*p).find("3 not valid here, dropped"), std::string::npos) << Describe(*p);

  // Nothing valid anywhere: no seeds, the drops still on record.
  const SeedCheck none = [](const std::string&) -> std::optional<std::string> { return std::string("no"); };
  p = Pick({}, FakeH200(), "b8-l4096", none);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_TRUE(p->empty());
  EXPECT_EQ(p->dropped, 4);
}

// In the tuned database, the unit's own result at this generator is its resume data, not a
// seed; one from an older generator seeds its retune (after current sources of this model),
// and so does the same bucket of this model in a seed database (tuned on another machine).
TEST_F(WarmStartTest, OwnCurrentResultResumesStaleOneSeeds) {
  WriteTuned(*target_, FakeH200(), kProblem, "b8-l4096", {K("mma-n64-w4-s3-splitauto-g2")});
  absl::StatusOr<WarmStartPick> p = Pick({}, FakeH200(), "b8-l4096");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_TRUE(p->empty());

  auto old = NewDb("old.db");
  WriteTuned(*old, FakeH200(), kProblem, "b8-l4096", {K("mma-n128-w4-s3-splitauto-g1")}, kGeneratorVersion - 1);
  WriteTuned(*old, FakeH200(), kProblem, "b8-l8192", {K("mma-n128-w8-s3-splitauto-g1")});
  old.reset();
  p = Pick({dir_ + "/old.db"}, FakeH200(), "b8-l4096");
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_EQ(p->origins.size(), 1u);
  EXPECT_EQ(p->origins[0].source.bucket, "b8-l8192");  // current generator first
  absl::StatusOr<std::unique_ptr<WarmStart>> w = WarmStart::Open(*target_, {dir_ + "/old.db"});
  ASSERT_TRUE(w.ok()) << w.status();
  absl::StatusOr<std::vector<SeedSource>> all =
      (*w)->Sources(ToCacheDevice(FakeH200()), kProblem, "b8-l4096", kGeneratorVersion);
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[1].bucket, "b8-l4096");
  EXPECT_TRUE((*all)[1].stale);
  EXPECT_EQ((*all)[1].generator_version, kGeneratorVersion - 1);
}

std::string Bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// Seed databases are opened read-only: the file is not changed (nor is its time), a missing
// one is NotFound naming it, a file that is not a database is refused.
TEST_F(WarmStartTest, SeedDatabasesAreReadNeverWritten) {
  {
    auto seed = NewDb("seed.db");
    WriteTuned(*seed, FakeH100(), kProblem, "b1-l1024", {K("mma-n64-w4-s3-splitauto-g2")});
  }
  const std::string path = dir_ + "/seed.db";
  const std::string before = Bytes(path);
  const auto mtime = std::filesystem::last_write_time(path);
  for (int i = 0; i < 2; ++i) {
    absl::StatusOr<WarmStartPick> p = Pick({path}, FakeH200(), "b8-l4096");
    ASSERT_TRUE(p.ok()) << p.status();
    EXPECT_EQ(p->seeds.size(), 1u);
  }
  EXPECT_EQ(Bytes(path), before);
  EXPECT_EQ(std::filesystem::last_write_time(path), mtime);

  absl::StatusOr<WarmStartPick> missing = Pick({dir_ + "/nope.db"}, FakeH200(), "b8-l4096");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound) << missing.status();
  EXPECT_NE(missing.status().message().find("nope.db"), std::string::npos) << missing.status();
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/nope.db"));
  std::ofstream(dir_ + "/junk.db") << "not a database, not at all, just text that is long enough";
  EXPECT_FALSE(Pick({dir_ + "/junk.db"}, FakeH200(), "b8-l4096").ok());
}

}  // namespace
}  // namespace parallax::search
