#pragma once
// Column lists and Stmt -> row struct readers shared by the Store queries and Import, so
// each row shape is spelled once.

#include "absl/status/statusor.h"
#include "parallax/cache/rows.h"
#include "parallax/cache/stmt.h"

namespace parallax::cache::internal {

// SELECT <kDeviceColumns> FROM devices d ...
inline constexpr const char* kDeviceColumns =
    "d.id, d.fingerprint, d.name, d.sm_count, d.cc_major, d.cc_minor, d.clock_khz, "
    "d.mem_bytes, d.l2_bytes, d.driver_version, d.nvrtc_version, d.created_at";
DeviceInfo ReadDevice(const Stmt& stmt);

// SELECT <kMeasurementColumns> FROM <kMeasurementJoin> ...
inline constexpr const char* kMeasurementColumns =
    "m.id, m.run_id, m.device_id, m.problem_id, m.variant_id, m.bucket, m.status, "
    "m.median_us, m.min_us, m.max_us, m.reps, m.error_text, m.rel_error, m.measured_at, "
    "m.generator_version, m.nvrtc_version, d.fingerprint, p.key, v.key";
inline constexpr const char* kMeasurementJoin =
    "measurements m JOIN devices d ON d.id = m.device_id "
    "JOIN problems p ON p.id = m.problem_id JOIN variants v ON v.id = m.variant_id";
absl::StatusOr<Measurement> ReadMeasurement(const Stmt& stmt);

// SELECT <kBestConfigColumns> FROM best_configs b JOIN devices d ON d.id = b.device_id
inline constexpr const char* kBestConfigColumns =
    "d.fingerprint, b.problem_key, b.bucket, b.variant_key, b.median_us, "
    "b.generator_version, b.nvrtc_version, b.updated_at";
BestConfig ReadBestConfig(const Stmt& stmt);

// SELECT <kBinaryColumns> FROM binaries
inline constexpr const char* kBinaryColumns =
    "key, arch, generator_version, nvrtc_version, driver_version, source_hash, cubin, log, "
    "created_at";
BinaryEntry ReadBinary(const Stmt& stmt);

// SELECT <kRunColumns> FROM tuning_runs r
inline constexpr const char* kRunColumns =
    "r.id, r.device_id, r.started_at, r.finished_at, r.status, r.params_json, r.progress_json";
absl::StatusOr<RunInfo> ReadRun(const Stmt& stmt);

}  // namespace parallax::cache::internal
