// Store basics: round trips through a reopened file, resume lookups, best configs,
// binaries, runs, export and verify.
#include "parallax/cache/store.h"

#include <atomic>
#include <filesystem>
#include <thread>
#include <vector>

#include "parallax/cache/clock.h"
#include "test_util.h"

namespace parallax::cache::testing {
namespace {

using StoreTest = CacheTest;

TEST_F(StoreTest, CreateAndReopenRoundTrip) {
  const std::string path = PathFor("cache.db");
  Ids ids;
  int64_t ok_id = 0;
  int64_t run_id = 0;
  {
    ASSERT_OK_AND_ASSIGN(auto store, Store::Open(path));
    ASSERT_OK_AND_ASSIGN(ids, SeedEntities(*store));
    ASSERT_OK_AND_ASSIGN(run_id, store->StartRun(ids.device, {{"budget", 64}}));
    Measurement ok = OkMeasurement(ids.device, ids.problem, ids.variant_a, 1700000000000, 41.5);
    ok.run_id = run_id;
    ASSERT_OK_AND_ASSIGN(ok_id, store->RecordMeasurement(ok));
    Measurement failed;
    failed.device_id = ids.device;
    failed.problem_id = ids.problem;
    failed.variant_id = ids.variant_b;
    failed.status = MeasurementStatus::kFailed;
    failed.error_text = "nvrtc: too many resources requested for launch";
    failed.generator_version = 3;
    failed.nvrtc_version = 13000;
    ASSERT_OK(store->RecordMeasurement(failed).status());
    BestConfig best{
        TestDevice().fingerprint, kProblemKey, "seq4096", kVariantKeyA, 41.5, 3, 13000, 0};
    ASSERT_OK(store->SetBestConfig(best));
  }
  ASSERT_TRUE(std::filesystem::exists(path));

  ASSERT_OK_AND_ASSIGN(auto store, Store::Open(path));
  ASSERT_OK_AND_ASSIGN(int version, store->SchemaVersion());
  EXPECT_EQ(version, BuiltinVersion());
  // Upserts are idempotent: the same ids come back.
  ASSERT_OK_AND_ASSIGN(Ids again, SeedEntities(*store));
  EXPECT_EQ(again.device, ids.device);
  EXPECT_EQ(again.problem, ids.problem);
  EXPECT_EQ(again.variant_a, ids.variant_a);

  ASSERT_OK_AND_ASSIGN(DeviceInfo device, store->GetDevice(TestDevice().fingerprint));
  EXPECT_EQ(device.sm_count, 132);
  EXPECT_EQ(device.mem_bytes, TestDevice().mem_bytes);
  EXPECT_GT(device.created_at, 0);

  ASSERT_OK_AND_ASSIGN(auto rows, store->ListMeasurements());
  ASSERT_EQ(rows.size(), 2u);
  const Measurement& m = rows[0].id == ok_id ? rows[0] : rows[1];
  EXPECT_EQ(m.run_id, run_id);
  EXPECT_EQ(m.status, MeasurementStatus::kOk);
  EXPECT_DOUBLE_EQ(*m.median_us, 41.5);
  EXPECT_EQ(m.measured_at, 1700000000000);
  EXPECT_EQ(m.variant_key, kVariantKeyA);
  EXPECT_EQ(m.problem_key, kProblemKey);
  EXPECT_EQ(m.device_fingerprint, TestDevice().fingerprint);
  const Measurement& f = rows[0].id == ok_id ? rows[1] : rows[0];
  EXPECT_EQ(f.status, MeasurementStatus::kFailed);
  EXPECT_FALSE(f.median_us.has_value());
  EXPECT_FALSE(f.rel_error.has_value());
  EXPECT_GT(f.measured_at, 0);  // defaulted to now
  EXPECT_EQ(f.error_text, "nvrtc: too many resources requested for launch");

  ASSERT_OK_AND_ASSIGN(BestConfig best, store->GetBestConfig(TestDevice().fingerprint, kProblemKey,
                                                             "seq4096", CurrentVersions{3, 13000}));
  EXPECT_EQ(best.variant_key, kVariantKeyA);
  ASSERT_OK_AND_ASSIGN(RunInfo run, store->GetRun(run_id));
  EXPECT_EQ(run.params["budget"], 64);
  EXPECT_EQ(run.status, RunStatus::kRunning);
}

TEST_F(StoreTest, HasMeasurementDrivesResume) {
  ASSERT_OK_AND_ASSIGN(auto store, Store::Open(PathFor("cache.db")));
  ASSERT_OK_AND_ASSIGN(Ids ids, SeedEntities(*store));
  ASSERT_OK_AND_ASSIGN(bool has, store->HasMeasurement(ids.device, ids.problem, ids.variant_a, 3));
  EXPECT_FALSE(has);
  ASSERT_OK(store->RecordMeasurement(OkMeasurement(ids.device, ids.problem, ids.variant_a, 5, 9))
                .status());
  ASSERT_OK_AND_ASSIGN(has, store->HasMeasurement(ids.device, ids.problem, ids.variant_a, 3));
  EXPECT_TRUE(has);
  // A new generator version means the variant must be measured again.
  ASSERT_OK_AND_ASSIGN(has, store->HasMeasurement(ids.device, ids.problem, ids.variant_a, 4));
  EXPECT_FALSE(has);
  ASSERT_OK_AND_ASSIGN(has, store->HasMeasurement(ids.device, ids.problem, ids.variant_b, 3));
  EXPECT_FALSE(has);
}

TEST_F(StoreTest, ListMeasurementsFilters) {
  ASSERT_OK_AND_ASSIGN(auto store, Store::Open(PathFor("cache.db")));
  ASSERT_OK_AND_ASSIGN(Ids ids, SeedEntities(*store));
  for (int i = 0; i < 6; ++i) {
    Measurement m = OkMeasurement(ids.device, ids.problem, i % 2 ? ids.variant_b : ids.variant_a,
                                  1000 + i, 10 + i);
    if (i == 5) {
      m.status = MeasurementStatus::kTimeout;
      m.median_us.reset();
    }
    ASSERT_OK(store->RecordMeasurement(m).status());
  }
  MeasurementFilter by_variant;
  by_variant.variant_key = kVariantKeyB;
  ASSERT_OK_AND_ASSIGN(auto rows, store->ListMeasurements(by_variant));
  EXPECT_EQ(rows.size(), 3u);
  MeasurementFilter by_status;
  by_status.status = MeasurementStatus::kTimeout;
  ASSERT_OK_AND_ASSIGN(rows, store->ListMeasurements(by_status));
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].measured_at, 1005);
  MeasurementFilter since;
  since.measured_since = 1003;
  since.limit = 2;
  ASSERT_OK_AND_ASSIGN(rows, store->ListMeasurements(since));
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].measured_at, 1003);
  EXPECT_EQ(rows[1].measured_at, 1004);
  MeasurementFilter other_device;
  other_device.device_fingerprint = "some-other-gpu";
  ASSERT_OK_AND_ASSIGN(rows, store->ListMeasurements(other_device));
  EXPECT_TRUE(rows.empty());
}

TEST_F(StoreTest, RejectsInvalidMeasurements) {
  ASSERT_OK_AND_ASSIGN(auto store, Store::Open(PathFor("cache.db")));
  ASSERT_OK_AND_ASSIGN(Ids ids, SeedEntities(*store));
  Measurement no_time = OkMeasurement(ids.device, ids.problem, ids.variant_a, 1, 1);
  no_time.median_us.reset();
  EXPECT_EQ(store->RecordMeasurement(no_time).status().code(), absl::StatusCode::kInvalidArgument);
  // Foreign keys are enforced: an unknown device id is refused.
  Measurement orphan = OkMeasurement(ids.device + 100, ids.problem, ids.variant_a, 1, 1);
  absl::Status s = store->RecordMeasurement(orphan).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  ASSERT_OK_AND_ASSIGN(auto rows, store->ListMeasurements());
  EXPECT_TRUE(rows.empty());
}

TEST_F(StoreTest, StaleVersionsAreListedButNotServed) {
  ASSERT_OK_AND_ASSIGN(auto store, Store::Open(PathFor("cache.db")));
  ASSERT_OK(SeedEntities(*store).status());
  const std::string fp = TestDevice().fingerprint;
  ASSERT_OK(store->SetBestConfig({fp, kProblemKey, "seq1024", kVariantKeyA, 20.0, 2, 13000, 0}));
  ASSERT_OK(store->SetBestConfig({fp, kProblemKey, "seq2048", kVariantKeyA, 30.0, 3, 12080, 0}));
  ASSERT_OK(store->SetBestConfig({fp, kProblemKey, "seq4096", kVariantKeyB, 40.0, 3, 13000, 0}));
  const CurrentVersions current{3, 13000};

  absl::StatusOr<BestConfig> old_generator =
      store->GetBestConfig(fp, kProblemKey, "seq1024", current);
  EXPECT_EQ(old_generator.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(old_generator.status().message().find("stale"), absl::string_view::npos);
  EXPECT_EQ(store->GetBestConfig(fp, kProblemKey, "seq2048", current).status().code(),
            absl::StatusCode::kNotFound);
  ASSERT_OK_AND_ASSIGN(BestConfig fresh, store->GetBestConfig(fp, kProblemKey, "seq4096", current));
  EXPECT_EQ(fresh.variant_key, kVariantKeyB);
  EXPECT_EQ(store->GetBestConfig(fp, kProblemKey, "seq8192", current).status().code(),
            absl::StatusCode::kNotFound);
  // The old generator still finds its entry.
  EXPECT_OK(store->GetBestConfig(fp, kProblemKey, "seq1024", {2, 13000}).status());

  ASSERT_OK_AND_ASSIGN(auto all, store->ListBestConfigs());
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].bucket, "seq1024");
  EXPECT_EQ(all[0].generator_version, 2);
  EXPECT_EQ(all[1].nvrtc_version, 12080);

  // Re-tuning under current versions replaces the stale entry.
  ASSERT_OK(store->SetBestConfig({fp, kProblemKey, "seq1024", kVariantKeyB, 19.0, 3, 13000, 0}));
  ASSERT_OK_AND_ASSIGN(fresh, store->GetBestConfig(fp, kProblemKey, "seq1024", current));
  EXPECT_DOUBLE_EQ(fresh.median_us, 19.0);
  BestConfigFilter filter;
  filter.device_fingerprint = "unknown";
  ASSERT_OK_AND_ASSIGN(all, store->ListBestConfigs(filter));
  EXPECT_TRUE(all.empty());
  // Best configs need a known device.
  EXPECT_EQ(store->SetBestConfig({"unknown", kProblemKey, "", kVariantKeyA, 1, 3, 13000, 0}).code(),
            absl::StatusCode::kNotFound);
}

TEST_F(StoreTest, BinariesPutAndGet) {
  const std::string path = PathFor("cache.db");
  BinaryEntry e;
  e.key = "xxh3:9f1c2ab4d55e0a17";
  e.arch = "sm_90a";
  e.generator_version = 3;
  e.nvrtc_version = 13000;
  e.driver_version = 13000;
  e.source_hash = "xxh3:0123456789abcdef";
  for (int i = 0; i < 300000; ++i) e.cubin.push_back(static_cast<uint8_t>(i * 31));
  e.cubin[10] = 0;  // embedded NULs must survive
  e.log = "ptxas info: Used 128 registers";
  {
    ASSERT_OK_AND_ASSIGN(auto store, Store::Open(path));
    ASSERT_OK(store->PutBinary(e));
    BinaryEntry empty = e;
    empty.key = "xxh3:empty";
    empty.cubin.clear();
    ASSERT_OK(store->PutBinary(empty));
  }
  ASSERT_OK_AND_ASSIGN(auto store, Store::Open(path));
  ASSERT_OK_AND_ASSIGN(BinaryEntry got, store->GetBinary(e.key));
  EXPECT_EQ(got.cubin, e.cubin);
  EXPECT_EQ(got.arch, "sm_90a");
  EXPECT_EQ(got.log, e.log);
  EXPECT_EQ(got.source_hash, e.source_hash);
  EXPECT_GT(got.created_at, 0);
  ASSERT_OK_AND_ASSIGN(BinaryEntry empty, store->GetBinary("xxh3:empty"));
  EXPECT_TRUE(empty.cubin.empty());
  EXPECT_EQ(store->GetBinary("xxh3:missing").status().code(), absl::StatusCode::kNotFound);
  // Putting the same key again replaces the entry.
  e.log = "rebuilt";
  e.cubin.resize(16);
  ASSERT_OK(store->PutBinary(e));
  ASSERT_OK_AND_ASSIGN(got, store->GetBinary(e.key));
  EXPECT_EQ(got.log, "rebuilt");
  EXPECT_EQ(got.cubin.size(), 16u);
}

TEST_F(StoreTest, RunLifecycleAndInterruption) {
  ASSERT_OK_AND_ASSIGN(auto store, Store::Open(PathFor("cache.db")));
  ASSERT_OK_AND_ASSIGN(Ids ids, SeedEntities(*store));
  ASSERT_OK_AND_ASSIGN(int64_t done_run, store->StartRun(ids.device, {{"space", "decode"}}));
  ASSERT_OK(store->UpdateRunProgress(done_run, {{"measured", 10}, {"total", 40}}));
  ASSERT_OK(store->FinishRun(done_run, RunStatus::kDone));
  ASSERT_OK_AND_ASSIGN(int64_t live_run, store->StartRun(ids.device, {{"space", "prefill"}}));
  ASSERT_OK(store->UpdateRunProgress(live_run, {{"measured", 3}}));
  EXPECT_EQ(store->FinishRun(live_run, RunStatus::kRunning).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store->UpdateRunProgress(9999, {}).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store->FinishRun(9999, RunStatus::kDone).code(), absl::StatusCode::kNotFound);

  ASSERT_OK_AND_ASSIGN(RunInfo done, store->GetRun(done_run));
  EXPECT_EQ(done.status, RunStatus::kDone);
  EXPECT_TRUE(done.finished_at.has_value());
  EXPECT_EQ(done.progress["total"], 40);

  ASSERT_OK_AND_ASSIGN(int64_t marked, store->MarkRunningAsInterrupted());
  EXPECT_EQ(marked, 1);
  ASSERT_OK_AND_ASSIGN(RunInfo live, store->GetRun(live_run));
  EXPECT_EQ(live.status, RunStatus::kInterrupted);
  EXPECT_EQ(live.progress["measured"], 3);
  ASSERT_OK_AND_ASSIGN(marked, store->MarkRunningAsInterrupted());
  EXPECT_EQ(marked, 0);

  ASSERT_OK_AND_ASSIGN(auto runs, store->ListRuns());
  ASSERT_EQ(runs.size(), 2u);
  RunFilter interrupted;
  interrupted.status = RunStatus::kInterrupted;
  ASSERT_OK_AND_ASSIGN(runs, store->ListRuns(interrupted));
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].id, live_run);
}

TEST_F(StoreTest, ExportWritesOneSelfContainedFile) {
  const std::string path = PathFor("cache.db");
  const std::string exported = PathFor("export.db");
  ASSERT_OK_AND_ASSIGN(auto store, Store::Open(path));
  ASSERT_OK_AND_ASSIGN(Ids ids, SeedEntities(*store));
  for (int i = 0; i < 20; ++i) {
    ASSERT_OK(store->RecordMeasurement(OkMeasurement(ids.device, ids.problem, ids.variant_a, i, 1))
                  .status());
  }
  ASSERT_OK(store->Export(exported));
  EXPECT_FALSE(std::filesystem::exists(exported + "-wal"));
  EXPECT_EQ(store->Export(exported).code(), absl::StatusCode::kAlreadyExists);
  // Usable as a cache on its own, while the original is still open and unchanged.
  ASSERT_OK_AND_ASSIGN(auto copy, Store::Open(exported));
  ASSERT_OK_AND_ASSIGN(auto rows, copy->ListMeasurements());
  EXPECT_EQ(rows.size(), 20u);
  ASSERT_OK_AND_ASSIGN(VerifyReport report, copy->Verify());
  EXPECT_TRUE(report.ok);
}

TEST_F(StoreTest, VerifyReportsIntegrityAndCounts) {
  ASSERT_OK_AND_ASSIGN(auto store, Store::Open(PathFor("cache.db")));
  ASSERT_OK_AND_ASSIGN(Ids ids, SeedEntities(*store));
  ASSERT_OK(store->RecordMeasurement(OkMeasurement(ids.device, ids.problem, ids.variant_a, 1, 1))
                .status());
  ASSERT_OK_AND_ASSIGN(VerifyReport report, store->Verify());
  EXPECT_TRUE(report.ok);
  EXPECT_EQ(report.schema_version, BuiltinVersion());
  EXPECT_TRUE(report.integrity_errors.empty());
  EXPECT_EQ(report.row_counts["devices"], 1);
  EXPECT_EQ(report.row_counts["variants"], 2);
  EXPECT_EQ(report.row_counts["measurements"], 1);
  EXPECT_EQ(report.row_counts["binaries"], 0);
}

TEST_F(StoreTest, OneStoreSharedByThreadsIsSafe) {
  ASSERT_OK_AND_ASSIGN(auto store, Store::Open(PathFor("cache.db")));
  ASSERT_OK_AND_ASSIGN(Ids ids, SeedEntities(*store));
  std::vector<std::thread> threads;
  std::atomic<int> errors{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        auto id = store->RecordMeasurement(
            OkMeasurement(ids.device, ids.problem, ids.variant_a, t * 1000 + i, 1));
        if (!id.ok()) ++errors;
        if (!store->ListMeasurements({}).ok()) ++errors;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(errors.load(), 0);
  ASSERT_OK_AND_ASSIGN(auto rows, store->ListMeasurements());
  EXPECT_EQ(rows.size(), 200u);
}

}  // namespace
}  // namespace parallax::cache::testing
