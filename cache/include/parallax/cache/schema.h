#pragma once
// Schema versioning: PRAGMA user_version plus an ordered list of migrations.

#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace parallax::cache {

class Db;

// One step from version-1 to version. apply() runs inside a BEGIN IMMEDIATE transaction
// that also sets user_version, so a failed or interrupted step leaves the file unchanged.
struct Migration {
  int version = 0;
  std::string description;
  std::function<absl::Status(Db&)> apply;
  // True when the step changes no table or column that Store's reads use (an index, data a
  // reader already accepts in either form): a read-only Store reads a file that lacks it as
  // it is. Otherwise a read-only Store reads an in-memory copy it migrates (the file itself
  // is never written by a reader).
  bool reads_unchanged = false;
};

// The migrations this build ships, version 1 first. To add one: write the step in its own
// src/schema_vN.cc and append it here; old files upgrade on the next writable Store::Open
// (read-only opens never migrate the file: see Migration::reads_unchanged).
const std::vector<Migration>& BuiltinMigrations();

// Built-in migrations followed by extra ones (a test hook); checks versions run 1..N.
absl::StatusOr<std::vector<Migration>> MigrationPlan(const std::vector<Migration>& extra);

// Applies every step of plan newer than the file's user_version; returns the final
// version. Safe to race with other processes: each step re-reads user_version under the
// write lock and skips work another opener already did.
absl::StatusOr<int> ApplyMigrations(Db& db, const std::vector<Migration>& plan);

}  // namespace parallax::cache
