// Import/merge: overlapping stores, the best-config conflict rule, idempotence, and
// sources on other schema versions.
#include <filesystem>

#include "parallax/cache/db.h"
#include "parallax/cache/store.h"
#include "test_util.h"

namespace parallax::cache::testing {
namespace {

using ImportTest = CacheTest;

constexpr const char* kOtherDevice = "a100-sxm-108sm-drv575";
constexpr const char* kVariantKeyC =
    "decode-bf16-d128-h32x8-contig-nowin.learned-plain.mma-n64-w4-s4-split2-g8";

BestConfig Best(std::string device, std::string bucket, std::string variant, double median,
                int generator, int nvrtc) {
  return BestConfig{std::move(device),
                    kProblemKey,
                    std::move(bucket),
                    std::move(variant),
                    median,
                    generator,
                    nvrtc,
                    0};
}

// Two stores that share a device, problem and variants, with overlapping measurements and
// best configs that disagree in every way the rule distinguishes.
struct Pair {
  std::unique_ptr<Store> ours;
  std::unique_ptr<Store> theirs;
};

void BuildPair(const std::string& ours_path, const std::string& theirs_path, Pair& pair) {
  ASSERT_OK_AND_ASSIGN(pair.ours, Store::Open(ours_path));
  ASSERT_OK_AND_ASSIGN(pair.theirs, Store::Open(theirs_path));
  Store& a = *pair.ours;
  Store& b = *pair.theirs;
  const std::string fp = TestDevice().fingerprint;
  ASSERT_OK_AND_ASSIGN(Ids ia, SeedEntities(a));
  ASSERT_OK_AND_ASSIGN(Ids ib, SeedEntities(b));
  ASSERT_OK(b.UpsertVariant(kVariantKeyB, 4).status());  // newer generator saw variant B
  ASSERT_OK_AND_ASSIGN(int64_t b_other_device, b.UpsertDevice(TestDevice(kOtherDevice)));
  ASSERT_OK_AND_ASSIGN(int64_t b_variant_c, b.UpsertVariant(kVariantKeyC, 3));

  // Measurements: (A,1000) in both -> duplicate; (B,1001) only ours; (B,2000) and the
  // other device's (C,3000) only theirs.
  ASSERT_OK(
      a.RecordMeasurement(OkMeasurement(ia.device, ia.problem, ia.variant_a, 1000, 10)).status());
  ASSERT_OK(
      a.RecordMeasurement(OkMeasurement(ia.device, ia.problem, ia.variant_b, 1001, 11)).status());
  ASSERT_OK_AND_ASSIGN(int64_t run, b.StartRun(ib.device, {{"budget", 8}}));
  Measurement dup = OkMeasurement(ib.device, ib.problem, ib.variant_a, 1000, 10);
  dup.run_id = run;
  ASSERT_OK(b.RecordMeasurement(dup).status());
  Measurement fresh = OkMeasurement(ib.device, ib.problem, ib.variant_b, 2000, 9);
  fresh.run_id = run;
  ASSERT_OK(b.RecordMeasurement(fresh).status());
  ASSERT_OK(b.RecordMeasurement(OkMeasurement(b_other_device, ib.problem, b_variant_c, 3000, 7))
                .status());

  // Best configs, bucket by bucket (ours | theirs -> expected winner):
  ASSERT_OK(a.SetBestConfig(Best(fp, "b1", kVariantKeyA, 10, 3, 13000)));  // same versions,
  ASSERT_OK(b.SetBestConfig(Best(fp, "b1", kVariantKeyB, 8, 3, 13000)));   //  theirs faster
  ASSERT_OK(a.SetBestConfig(Best(fp, "b2", kVariantKeyA, 5, 3, 13000)));   // same versions,
  ASSERT_OK(b.SetBestConfig(Best(fp, "b2", kVariantKeyB, 7, 3, 13000)));   //  ours faster
  ASSERT_OK(a.SetBestConfig(Best(fp, "b3", kVariantKeyA, 5, 3, 13000)));   // theirs newer
  ASSERT_OK(b.SetBestConfig(Best(fp, "b3", kVariantKeyB, 9, 4, 13000)));   //  generator
  ASSERT_OK(a.SetBestConfig(Best(fp, "b4", kVariantKeyA, 9, 4, 13000)));   // ours newer
  ASSERT_OK(b.SetBestConfig(Best(fp, "b4", kVariantKeyB, 5, 3, 13000)));   //  generator
  ASSERT_OK(a.SetBestConfig(Best(fp, "b5", kVariantKeyA, 6, 3, 12080)));   // theirs newer
  ASSERT_OK(b.SetBestConfig(Best(fp, "b5", kVariantKeyB, 6, 3, 13000)));   //  nvrtc
  ASSERT_OK(a.SetBestConfig(Best(fp, "b6", kVariantKeyA, 4, 3, 13000)));   // tie: ours kept
  ASSERT_OK(b.SetBestConfig(Best(fp, "b6", kVariantKeyB, 4, 3, 13000)));
  ASSERT_OK(b.SetBestConfig(Best(kOtherDevice, "b7", kVariantKeyC, 3, 3, 13000)));  // new

  BinaryEntry shared{"xxh3:shared", "sm_90a", 3, 13000, 13000, "src", {1, 2, 3}, "ours", 0};
  ASSERT_OK(a.PutBinary(shared));
  shared.log = "theirs";
  ASSERT_OK(b.PutBinary(shared));
  ASSERT_OK(b.PutBinary({"xxh3:only-theirs", "sm_80", 3, 13000, 13000, "src2", {9}, "", 0}));
}

TEST_F(ImportTest, MergeFollowsTheDocumentedRules) {
  const std::string theirs_path = PathFor("theirs.db");
  Pair pair;
  BuildPair(PathFor("ours.db"), theirs_path, pair);
  if (HasFatalFailure()) return;
  pair.theirs.reset();  // importing works from a closed file too
  const std::string theirs_bytes = ReadBytes(theirs_path);

  ASSERT_OK_AND_ASSIGN(ImportStats stats, pair.ours->Import(theirs_path));
  EXPECT_EQ(stats.devices.inserted, 1);
  EXPECT_EQ(stats.devices.skipped, 1);
  EXPECT_EQ(stats.problems.skipped, 1);
  EXPECT_EQ(stats.variants.inserted, 1);  // C
  EXPECT_EQ(stats.variants.updated, 1);   // B's generator_version raised to 4
  EXPECT_EQ(stats.variants.skipped, 1);   // A
  EXPECT_EQ(stats.runs.inserted, 1);
  EXPECT_EQ(stats.measurements.inserted, 2);
  EXPECT_EQ(stats.measurements.skipped, 1);
  EXPECT_EQ(stats.best_configs.inserted, 1);
  EXPECT_EQ(stats.best_configs.updated, 3);
  EXPECT_EQ(stats.best_configs.skipped, 3);
  EXPECT_EQ(stats.binaries.inserted, 0);  // never imported: a cubin is unverifiable code
  EXPECT_EQ(stats.binaries.skipped, 2);
  EXPECT_EQ(stats.binaries.conflicts, 0);  // same key, same cubin: only the log differs
  EXPECT_EQ(ReadBytes(theirs_path), theirs_bytes) << "import modified its source";

  Store& a = *pair.ours;
  ASSERT_OK_AND_ASSIGN(auto best, a.ListBestConfigs());
  std::map<std::string, BestConfig> by_bucket;
  for (const BestConfig& c : best) by_bucket[c.bucket] = c;
  ASSERT_EQ(by_bucket.size(), 7u);
  EXPECT_EQ(by_bucket["b1"].variant_key, kVariantKeyB);  // lower median, same versions
  EXPECT_DOUBLE_EQ(by_bucket["b1"].median_us, 8);
  EXPECT_EQ(by_bucket["b2"].variant_key, kVariantKeyA);
  EXPECT_EQ(by_bucket["b3"].variant_key, kVariantKeyB);  // newer generator, slower
  EXPECT_EQ(by_bucket["b3"].generator_version, 4);
  EXPECT_EQ(by_bucket["b4"].variant_key, kVariantKeyA);
  EXPECT_EQ(by_bucket["b5"].variant_key, kVariantKeyB);
  EXPECT_EQ(by_bucket["b5"].nvrtc_version, 13000);
  EXPECT_EQ(by_bucket["b6"].variant_key, kVariantKeyA);
  EXPECT_EQ(by_bucket["b7"].device_fingerprint, kOtherDevice);

  ASSERT_OK_AND_ASSIGN(auto rows, a.ListMeasurements());
  ASSERT_EQ(rows.size(), 4u);
  ASSERT_OK_AND_ASSIGN(auto runs, a.ListRuns());
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].status, RunStatus::kInterrupted);  // nobody here is running it
  EXPECT_EQ(runs[0].params["budget"], 8);
  MeasurementFilter in_run;
  in_run.run_id = runs[0].id;
  ASSERT_OK_AND_ASSIGN(rows, a.ListMeasurements(in_run));
  ASSERT_EQ(rows.size(), 1u);  // the duplicate kept our row (without a run)
  EXPECT_EQ(rows[0].measured_at, 2000);
  ASSERT_OK_AND_ASSIGN(BinaryEntry shared, a.GetBinary("xxh3:shared"));
  EXPECT_EQ(shared.log, "ours");
  EXPECT_EQ(a.GetBinary("xxh3:only-theirs").status().code(), absl::StatusCode::kNotFound);

  // Importing the same file again changes nothing.
  ASSERT_OK_AND_ASSIGN(stats, a.Import(theirs_path));
  EXPECT_EQ(stats.measurements.inserted + stats.best_configs.inserted + stats.best_configs.updated +
                stats.devices.inserted + stats.runs.inserted + stats.binaries.inserted +
                stats.variants.inserted + stats.variants.updated,
            0);
  EXPECT_EQ(stats.measurements.skipped, 3);
  EXPECT_EQ(stats.best_configs.skipped, 7);
  ASSERT_OK_AND_ASSIGN(VerifyReport report, a.Verify());
  EXPECT_TRUE(report.ok);
  EXPECT_EQ(report.row_counts["measurements"], 4);
}

TEST_F(ImportTest, ExportThenImportIntoEmptyStore) {
  Pair pair;
  BuildPair(PathFor("ours.db"), PathFor("theirs.db"), pair);
  if (HasFatalFailure()) return;
  ASSERT_OK(pair.theirs->Export(PathFor("export.db")));
  ASSERT_OK_AND_ASSIGN(auto empty, Store::Open(PathFor("empty.db")));
  ASSERT_OK_AND_ASSIGN(ImportStats stats, empty->Import(PathFor("export.db")));
  EXPECT_EQ(stats.devices.inserted, 2);
  EXPECT_EQ(stats.measurements.inserted, 3);
  EXPECT_EQ(stats.best_configs.inserted, 7);
  EXPECT_EQ(stats.binaries.inserted, 0);
  ASSERT_OK_AND_ASSIGN(VerifyReport report, empty->Verify());
  EXPECT_TRUE(report.ok);
}

Migration NoOpNext() {
  return {BuiltinVersion() + 1, "test-only no-op",
          [](Db& db) { return db.Exec("CREATE TABLE next_marker (x);"); }};
}

TEST_F(ImportTest, OlderSourceIsMigratedInACopy) {
  const std::string source = PathFor("old.db");
  {
    ASSERT_OK_AND_ASSIGN(auto old_store, Store::Open(source));
    ASSERT_OK_AND_ASSIGN(Ids ids, SeedEntities(*old_store));
    ASSERT_OK(
        old_store->RecordMeasurement(OkMeasurement(ids.device, ids.problem, ids.variant_a, 1, 1))
            .status());
  }
  const std::string source_bytes = ReadBytes(source);
  StoreOptions v2;
  v2.extra_migrations.push_back(NoOpNext());
  ASSERT_OK_AND_ASSIGN(auto store, Store::Open(PathFor("new.db"), v2));
  ASSERT_OK_AND_ASSIGN(ImportStats stats, store->Import(source));
  EXPECT_EQ(stats.measurements.inserted, 1);
  EXPECT_EQ(ReadBytes(source), source_bytes);
  ASSERT_OK_AND_ASSIGN(Db raw, Db::Open(source));
  ASSERT_OK_AND_ASSIGN(int version, raw.UserVersion());
  EXPECT_EQ(version, BuiltinVersion());
  // The temporary migrated copy is gone.
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir_)) {
    files += entry.path().string().find(".tmp") != std::string::npos;
  }
  EXPECT_EQ(files, 0);
}

TEST_F(ImportTest, NewerSourceIsRefused) {
  const std::string source = PathFor("newer.db");
  {
    StoreOptions v2;
    v2.extra_migrations.push_back(NoOpNext());
    ASSERT_OK_AND_ASSIGN(auto newer, Store::Open(source, v2));
    ASSERT_OK(SeedEntities(*newer).status());
  }
  ASSERT_OK_AND_ASSIGN(auto store, Store::Open(PathFor("cache.db")));
  absl::StatusOr<ImportStats> stats = store->Import(source);
  EXPECT_EQ(stats.status().code(), absl::StatusCode::kFailedPrecondition) << stats.status();
  ASSERT_OK_AND_ASSIGN(auto devices, store->ListDevices());
  EXPECT_TRUE(devices.empty());
}

TEST_F(ImportTest, MissingSourceIsNotFound) {
  ASSERT_OK_AND_ASSIGN(auto store, Store::Open(PathFor("cache.db")));
  EXPECT_EQ(store->Import(PathFor("nope.db")).status().code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(std::filesystem::exists(PathFor("nope.db")));
}

}  // namespace
}  // namespace parallax::cache::testing
