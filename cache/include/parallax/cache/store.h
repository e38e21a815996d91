#pragma once
// Store: the tuning-results cache in one SQLite file.
//
// Thread-safe: one connection per Store behind a mutex. Several Stores (threads or
// processes) may share a file: WAL lets readers run beside the writer and writers wait up
// to busy_timeout_ms for the lock. Every write is its own BEGIN IMMEDIATE transaction.

#include <cstdint>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "parallax/cache/db.h"
#include "parallax/cache/reports.h"
#include "parallax/cache/rows.h"
#include "parallax/cache/store_options.h"

namespace parallax::cache {

class Store {
 public:
  // Creates the file if missing, then: refuses a non-SQLite or damaged file (DataLoss,
  // file untouched), refuses a schema newer than this build (FailedPrecondition), switches
  // to WAL and applies pending migrations. With options.read_only, none of the writing
  // steps (see StoreOptions::read_only).
  static absl::StatusOr<std::unique_ptr<Store>> Open(const std::string& path,
                                                     const StoreOptions& options = {});
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  const std::string& path() const { return path_; }
  // The file's schema version (for a read-only store, what the file has, which may be older
  // than this build's; 0 for an empty file).
  absl::StatusOr<int> SchemaVersion();
  bool read_only() const { return options_.read_only; }

  // Devices, problems, variants: insert or refresh by their unique key; return the id.
  absl::StatusOr<int64_t> UpsertDevice(const DeviceInfo& device);
  absl::StatusOr<DeviceInfo> GetDevice(absl::string_view fingerprint);
  absl::StatusOr<std::vector<DeviceInfo>> ListDevices();
  absl::StatusOr<int64_t> UpsertProblem(absl::string_view key, const nlohmann::json& problem);
  // A variant's generator_version only moves forward.
  absl::StatusOr<int64_t> UpsertVariant(absl::string_view key, int generator_version);

  // Appends one measurement; returns its id.
  absl::StatusOr<int64_t> RecordMeasurement(const Measurement& m);
  // Resume support: any measurement (whatever its status) for this exact combination.
  absl::StatusOr<bool> HasMeasurement(int64_t device_id, int64_t problem_id, int64_t variant_id,
                                      int generator_version);
  absl::StatusOr<std::vector<Measurement>> ListMeasurements(const MeasurementFilter& filter = {});

  // Unconditionally replaces the entry for (device, problem, bucket); the device must exist.
  absl::Status SetBestConfig(const BestConfig& config);
  // NotFound when absent or when stored under versions other than current. Device
  // fingerprints here and in the filters below match by DeviceKey (device_key.h): a file not
  // yet migrated to v3 may hold one GPU under several (driver) fingerprints; the entry at the
  // current versions with the lowest median_us is the answer.
  absl::StatusOr<BestConfig> GetBestConfig(absl::string_view device_fingerprint,
                                           absl::string_view problem_key, absl::string_view bucket,
                                           const CurrentVersions& current);
  // Every entry, stale ones included.
  absl::StatusOr<std::vector<BestConfig>> ListBestConfigs(const BestConfigFilter& filter = {});

  // Insert or replace by key (the artifact hash).
  absl::Status PutBinary(const BinaryEntry& entry);
  absl::StatusOr<BinaryEntry> GetBinary(absl::string_view key);

  absl::StatusOr<int64_t> StartRun(int64_t device_id, const nlohmann::json& params);
  absl::Status UpdateRunProgress(int64_t run_id, const nlohmann::json& progress);
  // status must not be kRunning.
  absl::Status FinishRun(int64_t run_id, RunStatus status);
  absl::StatusOr<RunInfo> GetRun(int64_t run_id);
  absl::StatusOr<std::vector<RunInfo>> ListRuns(const RunFilter& filter = {});
  // For startup after a crash: every 'running' run becomes 'interrupted'. Returns how many.
  // Only call it when no other live process is tuning into this file.
  absl::StatusOr<int64_t> MarkRunningAsInterrupted();

  // Writes a self-contained copy (VACUUM INTO). Refuses to overwrite an existing path.
  absl::Status Export(const std::string& path);
  // Merges another cache file into this one. The file is untrusted: it is opened read-only
  // with SQLite's defensive settings (no view, trigger or schema function of it runs), its
  // schema must equal what this build's migrations create for its version, and every row is
  // validated before anything is merged (InvalidArgument naming the first bad row; see
  // ImportOptions for key checks). The merge then runs in short write transactions
  // (options.rows_per_transaction rows), so this store's lock is never held for long;
  // cancel and the time limit stop it between them. A stopped or failed merge may leave a
  // prefix merged: every rule below is idempotent, so importing the file again completes it.
  // Rules:
  //  - devices / problems / variants: matched by fingerprint / key; missing ones are
  //    inserted; a variant's generator_version is raised if the source has a newer one.
  //  - runs: matched by (device, started_at, params); missing ones are inserted, a source
  //    run still 'running' arrives as 'interrupted' (nothing here is running it).
  //  - measurements: union, de-duplicated by (device fingerprint, problem key, variant key,
  //    bucket, generator_version, nvrtc_version, measured_at, status, median_us).
  //  - best_configs, per (device, problem, bucket): with equal (generator, nvrtc) versions
  //    the lower median_us wins (ties keep ours); otherwise the entry with the newer
  //    versions wins, compared as (generator_version, nvrtc_version).
  //  - binaries: never imported (a cubin is code, and its content cannot be checked
  //    against its key); counted as skipped, and as conflicts where we hold the key with
  //    other content.
  // A source with an older schema is migrated in a temporary copy next to this store
  // (removed afterwards, or by the next Open after a crash); the source file is never
  // modified. A newer schema is refused (FailedPrecondition).
  absl::StatusOr<ImportStats> Import(const std::string& path, const ImportOptions& options = {});

  // Full PRAGMA integrity_check and foreign_key_check plus per-table row counts.
  absl::StatusOr<VerifyReport> Verify();

 private:
  Store(Db db, std::string path, StoreOptions options, int file_version);
  static absl::StatusOr<std::unique_ptr<Store>> OpenReadOnly(const std::string& path,
                                                             const StoreOptions& options,
                                                             const std::vector<Migration>& plan);

  std::mutex mu_;
  Db db_;
  const std::string path_;
  const StoreOptions options_;
  const int file_version_;  // read-only stores: the file's schema version
};

}  // namespace parallax::cache
