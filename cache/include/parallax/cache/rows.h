#pragma once
// Plain row structs of the cache tables. Ids are sqlite rowids; times are unix ms.

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace parallax::cache {

enum class MeasurementStatus { kOk, kFailed, kWrong, kTimeout };
enum class RunStatus { kRunning, kDone, kInterrupted, kFailed, kCancelled };

// The strings stored in the status columns ("ok", "failed", ...).
absl::string_view ToString(MeasurementStatus status);
absl::string_view ToString(RunStatus status);
absl::StatusOr<MeasurementStatus> ParseMeasurementStatus(absl::string_view text);
absl::StatusOr<RunStatus> ParseRunStatus(absl::string_view text);

struct DeviceInfo {
  int64_t id = 0;
  std::string fingerprint;  // unique identity of the GPU + driver setup
  std::string name;
  int sm_count = 0;
  int cc_major = 0;
  int cc_minor = 0;
  int64_t clock_khz = 0;
  int64_t mem_bytes = 0;
  int64_t l2_bytes = 0;
  int driver_version = 0;
  int nvrtc_version = 0;
  int64_t created_at = 0;  // 0 on insert: now
};

struct Measurement {
  int64_t id = 0;
  std::optional<int64_t> run_id;
  int64_t device_id = 0;
  int64_t problem_id = 0;
  int64_t variant_id = 0;
  std::string bucket;
  MeasurementStatus status = MeasurementStatus::kOk;
  // Timings exist only for runs that executed; required when status is kOk.
  std::optional<double> median_us;
  std::optional<double> min_us;
  std::optional<double> max_us;
  int reps = 0;
  std::string error_text;
  std::optional<double> rel_error;
  int64_t measured_at = 0;  // 0 on insert: now
  int generator_version = 0;
  int nvrtc_version = 0;
  // Filled by ListMeasurements (joined from devices/problems/variants); ignored on insert.
  std::string device_fingerprint;
  std::string problem_key;
  std::string variant_key;
};

// The winning variant for (device, problem, bucket), valid for the versions it was tuned
// with. Entries from other versions stay in the table but GetBestConfig does not serve them.
struct BestConfig {
  std::string device_fingerprint;
  std::string problem_key;
  std::string bucket;
  std::string variant_key;
  double median_us = 0;
  int generator_version = 0;
  int nvrtc_version = 0;
  int64_t updated_at = 0;  // 0 on write: now
};

// A compiled kernel keyed by its artifact hash.
struct BinaryEntry {
  std::string key;
  std::string arch;  // e.g. "sm_90a"
  int generator_version = 0;
  int nvrtc_version = 0;
  int driver_version = 0;
  std::string source_hash;
  std::vector<uint8_t> cubin;
  std::string log;
  int64_t created_at = 0;  // 0 on write: now
};

struct RunInfo {
  int64_t id = 0;
  int64_t device_id = 0;
  int64_t started_at = 0;
  std::optional<int64_t> finished_at;
  RunStatus status = RunStatus::kRunning;
  nlohmann::json params = nlohmann::json::object();
  nlohmann::json progress = nlohmann::json::object();
};

}  // namespace parallax::cache
