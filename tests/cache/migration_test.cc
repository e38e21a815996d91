// Schema migrations: upgrades through an extra (test-only) step, failed steps, and files
// written by a newer build.
#include "parallax/cache/db.h"
#include "parallax/cache/schema.h"
#include "parallax/cache/store.h"
#include "test_util.h"

namespace parallax::cache::testing {
namespace {

using MigrationTest = CacheTest;

// Stands in for a future version: adds a column and backfills it from existing rows.
Migration AddNotesColumn() {
  return {BuiltinVersion() + 1, "add variants.notes", [](Db& db) {
            return db.Exec(
                "ALTER TABLE variants ADD COLUMN notes TEXT NOT NULL DEFAULT '';"
                "UPDATE variants SET notes = 'from v1';");
          }};
}

StoreOptions WithExtra(Migration m) {
  StoreOptions options;
  options.extra_migrations.push_back(std::move(m));
  return options;
}

TEST_F(MigrationTest, ExtraMigrationUpgradesAndKeepsData) {
  const std::string path = PathFor("cache.db");
  {
    ASSERT_OK_AND_ASSIGN(auto store, Store::Open(path));
    ASSERT_OK_AND_ASSIGN(Ids ids, SeedEntities(*store));
    ASSERT_OK(store->RecordMeasurement(OkMeasurement(ids.device, ids.problem, ids.variant_a, 7, 2))
                  .status());
    ASSERT_OK_AND_ASSIGN(int v, store->SchemaVersion());
    ASSERT_EQ(v, BuiltinVersion());
  }
  {
    ASSERT_OK_AND_ASSIGN(auto store, Store::Open(path, WithExtra(AddNotesColumn())));
    ASSERT_OK_AND_ASSIGN(int v, store->SchemaVersion());
    EXPECT_EQ(v, BuiltinVersion() + 1);
    ASSERT_OK_AND_ASSIGN(auto rows, store->ListMeasurements());
    ASSERT_EQ(rows.size(), 1u);
    EXPECT_EQ(rows[0].variant_key, kVariantKeyA);
    // Still writable through the ordinary API after the upgrade.
    ASSERT_OK(store->UpsertVariant("another-variant", 3).status());
  }
  // The new column exists and was backfilled; reopening with the hook is a no-op.
  ASSERT_OK_AND_ASSIGN(Db db, Db::Open(path));
  ASSERT_OK_AND_ASSIGN(int64_t backfilled,
                       db.QueryInt("SELECT COUNT(*) FROM variants WHERE notes = 'from v1'"));
  EXPECT_EQ(backfilled, 2);
  ASSERT_OK_AND_ASSIGN(auto store, Store::Open(path, WithExtra(AddNotesColumn())));
  ASSERT_OK_AND_ASSIGN(int v, store->SchemaVersion());
  EXPECT_EQ(v, BuiltinVersion() + 1);
}

TEST_F(MigrationTest, FailedMigrationLeavesFileAtOldVersion) {
  const std::string path = PathFor("cache.db");
  {
    ASSERT_OK_AND_ASSIGN(auto store, Store::Open(path));
    ASSERT_OK(SeedEntities(*store).status());
  }
  Migration broken{BuiltinVersion() + 1, "half-done step", [](Db& db) -> absl::Status {
                     absl::Status s = db.Exec("ALTER TABLE variants ADD COLUMN notes TEXT;");
                     if (!s.ok()) return s;
                     return absl::InternalError("simulated failure after a partial change");
                   }};
  absl::StatusOr<std::unique_ptr<Store>> failed = Store::Open(path, WithExtra(broken));
  ASSERT_FALSE(failed.ok());
  EXPECT_NE(failed.status().message().find("simulated failure"), absl::string_view::npos);

  ASSERT_OK_AND_ASSIGN(auto store, Store::Open(path));
  ASSERT_OK_AND_ASSIGN(int v, store->SchemaVersion());
  EXPECT_EQ(v, BuiltinVersion());
  store.reset();
  // The partial ALTER was rolled back with the step, so the real step applies cleanly.
  ASSERT_OK_AND_ASSIGN(store, Store::Open(path, WithExtra(AddNotesColumn())));
  ASSERT_OK_AND_ASSIGN(v, store->SchemaVersion());
  EXPECT_EQ(v, BuiltinVersion() + 1);
}

TEST_F(MigrationTest, NewerSchemaIsRefusedAndLeftUntouched) {
  const std::string path = PathFor("cache.db");
  {
    ASSERT_OK_AND_ASSIGN(auto store, Store::Open(path));
    ASSERT_OK(SeedEntities(*store).status());
  }
  {
    ASSERT_OK_AND_ASSIGN(Db db, Db::Open(path));
    ASSERT_OK(db.SetUserVersion(42));
  }
  const std::string before = ReadBytes(path);
  absl::StatusOr<std::unique_ptr<Store>> store = Store::Open(path);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition) << store.status();
  EXPECT_NE(store.status().message().find(path), absl::string_view::npos);
  EXPECT_NE(store.status().message().find("42"), absl::string_view::npos);
  EXPECT_EQ(ReadBytes(path), before);
}

TEST_F(MigrationTest, ForeignSqliteDatabaseIsRefused) {
  const std::string path = PathFor("other_app.db");
  {
    ASSERT_OK_AND_ASSIGN(Db db, Db::Open(path));
    ASSERT_OK(db.Exec("CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('keep me');"));
  }
  const std::string before = ReadBytes(path);
  absl::StatusOr<std::unique_ptr<Store>> store = Store::Open(path);
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition) << store.status();
  EXPECT_EQ(ReadBytes(path), before);
}

TEST_F(MigrationTest, PlanRejectsGapsAndMissingSteps) {
  EXPECT_FALSE(MigrationPlan({{BuiltinVersion() + 2, "skips a version", [](Db&) { return absl::OkStatus(); }}}).ok());
  EXPECT_FALSE(MigrationPlan({{BuiltinVersion() + 1, "no step", nullptr}}).ok());
  ASSERT_OK_AND_ASSIGN(auto plan, MigrationPlan({AddNotesColumn()}));
  EXPECT_EQ(plan.size(), static_cast<size_t>(BuiltinVersion() + 1));
  EXPECT_EQ(
      Store::Open(PathFor("x.db"), WithExtra({BuiltinVersion() + 3, "gap", AddNotesColumn().apply})).status().code(),
      absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace parallax::cache::testing
