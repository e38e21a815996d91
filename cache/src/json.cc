#include "parallax/cache/json.h"

#include <stdexcept>
#include <string>

#include "absl/strings/escaping.h"

namespace parallax::cache {
namespace {

using nlohmann::json;

template <typename T>
json OptToJson(const std::optional<T>& v) {
  return v.has_value() ? json(*v) : json(nullptr);
}

template <typename T>
std::optional<T> OptFromJson(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::nullopt;
  return it->template get<T>();
}

template <typename T>
T ValueOr(const json& j, const char* key, T fallback) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  return it->template get<T>();
}

}  // namespace

void to_json(json& j, MeasurementStatus v) { j = std::string(ToString(v)); }
void from_json(const json& j, MeasurementStatus& v) {
  absl::StatusOr<MeasurementStatus> parsed = ParseMeasurementStatus(j.get<std::string>());
  if (!parsed.ok()) throw std::invalid_argument(std::string(parsed.status().message()));
  v = *parsed;
}

void to_json(json& j, RunStatus v) { j = std::string(ToString(v)); }
void from_json(const json& j, RunStatus& v) {
  absl::StatusOr<RunStatus> parsed = ParseRunStatus(j.get<std::string>());
  if (!parsed.ok()) throw std::invalid_argument(std::string(parsed.status().message()));
  v = *parsed;
}

void to_json(json& j, const DeviceInfo& v) {
  j = json{{"id", v.id},
           {"fingerprint", v.fingerprint},
           {"name", v.name},
           {"sm_count", v.sm_count},
           {"cc_major", v.cc_major},
           {"cc_minor", v.cc_minor},
           {"clock_khz", v.clock_khz},
           {"mem_bytes", v.mem_bytes},
           {"l2_bytes", v.l2_bytes},
           {"driver_version", v.driver_version},
           {"nvrtc_version", v.nvrtc_version},
           {"created_at", v.created_at}};
}
void from_json(const json& j, DeviceInfo& v) {
  v.id = ValueOr<int64_t>(j, "id", 0);
  v.fingerprint = j.at("fingerprint").get<std::string>();
  v.name = ValueOr<std::string>(j, "name", "");
  v.sm_count = ValueOr(j, "sm_count", 0);
  v.cc_major = ValueOr(j, "cc_major", 0);
  v.cc_minor = ValueOr(j, "cc_minor", 0);
  v.clock_khz = ValueOr<int64_t>(j, "clock_khz", 0);
  v.mem_bytes = ValueOr<int64_t>(j, "mem_bytes", 0);
  v.l2_bytes = ValueOr<int64_t>(j, "l2_bytes", 0);
  v.driver_version = ValueOr(j, "driver_version", 0);
  v.nvrtc_version = ValueOr(j, "nvrtc_version", 0);
  v.created_at = ValueOr<int64_t>(j, "created_at", 0);
}

void to_json(json& j, const Measurement& v) {
  j = json{{"id", v.id},
           {"run_id", OptToJson(v.run_id)},
           {"device_id", v.device_id},
           {"problem_id", v.problem_id},
           {"variant_id", v.variant_id},
           {"device_fingerprint", v.device_fingerprint},
           {"problem_key", v.problem_key},
           {"variant_key", v.variant_key},
           {"bucket", v.bucket},
           {"status", v.status},
           {"median_us", OptToJson(v.median_us)},
           {"min_us", OptToJson(v.min_us)},
           {"max_us", OptToJson(v.max_us)},
           {"reps", v.reps},
           {"error_text", v.error_text},
           {"rel_error", OptToJson(v.rel_error)},
           {"measured_at", v.measured_at},
           {"generator_version", v.generator_version},
           {"nvrtc_version", v.nvrtc_version}};
}
void from_json(const json& j, Measurement& v) {
  v.id = ValueOr<int64_t>(j, "id", 0);
  v.run_id = OptFromJson<int64_t>(j, "run_id");
  v.device_id = ValueOr<int64_t>(j, "device_id", 0);
  v.problem_id = ValueOr<int64_t>(j, "problem_id", 0);
  v.variant_id = ValueOr<int64_t>(j, "variant_id", 0);
  v.device_fingerprint = ValueOr<std::string>(j, "device_fingerprint", "");
  v.problem_key = ValueOr<std::string>(j, "problem_key", "");
  v.variant_key = ValueOr<std::string>(j, "variant_key", "");
  v.bucket = ValueOr<std::string>(j, "bucket", "");
  v.status = j.at("status").get<MeasurementStatus>();
  v.median_us = OptFromJson<double>(j, "median_us");
  v.min_us = OptFromJson<double>(j, "min_us");
  v.max_us = OptFromJson<double>(j, "max_us");
  v.reps = ValueOr(j, "reps", 0);
  v.error_text = ValueOr<std::string>(j, "error_text", "");
  v.rel_error = OptFromJson<double>(j, "rel_error");
  v.measured_at = ValueOr<int64_t>(j, "measured_at", 0);
  v.generator_version = j.at("generator_version").get<int>();
  v.nvrtc_version = j.at("nvrtc_version").get<int>();
}

void to_json(json& j, const BestConfig& v) {
  j = json{{"device_fingerprint", v.device_fingerprint},
           {"problem_key", v.problem_key},
           {"bucket", v.bucket},
           {"variant_key", v.variant_key},
           {"median_us", v.median_us},
           {"generator_version", v.generator_version},
           {"nvrtc_version", v.nvrtc_version},
           {"updated_at", v.updated_at}};
}
void from_json(const json& j, BestConfig& v) {
  v.device_fingerprint = j.at("device_fingerprint").get<std::string>();
  v.problem_key = j.at("problem_key").get<std::string>();
  v.bucket = ValueOr<std::string>(j, "bucket", "");
  v.variant_key = j.at("variant_key").get<std::string>();
  v.median_us = j.at("median_us").get<double>();
  v.generator_version = j.at("generator_version").get<int>();
  v.nvrtc_version = j.at("nvrtc_version").get<int>();
  v.updated_at = ValueOr<int64_t>(j, "updated_at", 0);
}

void to_json(json& j, const BinaryEntry& v) {
  absl::string_view bytes(reinterpret_cast<const char*>(v.cubin.data()), v.cubin.size());
  j = json{{"key", v.key},
           {"arch", v.arch},
           {"generator_version", v.generator_version},
           {"nvrtc_version", v.nvrtc_version},
           {"driver_version", v.driver_version},
           {"source_hash", v.source_hash},
           {"cubin_bytes", v.cubin.size()},
           {"cubin_base64", absl::Base64Escape(bytes)},
           {"log", v.log},
           {"created_at", v.created_at}};
}
void from_json(const json& j, BinaryEntry& v) {
  v.key = j.at("key").get<std::string>();
  v.arch = ValueOr<std::string>(j, "arch", "");
  v.generator_version = ValueOr(j, "generator_version", 0);
  v.nvrtc_version = ValueOr(j, "nvrtc_version", 0);
  v.driver_version = ValueOr(j, "driver_version", 0);
  v.source_hash = ValueOr<std::string>(j, "source_hash", "");
  std::string bytes;
  if (!absl::Base64Unescape(ValueOr<std::string>(j, "cubin_base64", ""), &bytes)) {
    throw std::invalid_argument("BinaryEntry: cubin_base64 is not valid base64");
  }
  v.cubin.assign(bytes.begin(), bytes.end());
  v.log = ValueOr<std::string>(j, "log", "");
  v.created_at = ValueOr<int64_t>(j, "created_at", 0);
}

void to_json(json& j, const RunInfo& v) {
  j = json{{"id", v.id},
           {"device_id", v.device_id},
           {"started_at", v.started_at},
           {"finished_at", OptToJson(v.finished_at)},
           {"status", v.status},
           {"params", v.params},
           {"progress", v.progress}};
}
void from_json(const json& j, RunInfo& v) {
  v.id = ValueOr<int64_t>(j, "id", 0);
  v.device_id = j.at("device_id").get<int64_t>();
  v.started_at = ValueOr<int64_t>(j, "started_at", 0);
  v.finished_at = OptFromJson<int64_t>(j, "finished_at");
  v.status = j.at("status").get<RunStatus>();
  v.params = j.value("params", json::object());
  v.progress = j.value("progress", json::object());
}

void to_json(json& j, const RowCounts& v) {
  j = json{{"inserted", v.inserted},
           {"updated", v.updated},
           {"skipped", v.skipped},
           {"conflicts", v.conflicts}};
}

void to_json(json& j, const ImportStats& v) {
  j = json{{"devices", v.devices},           {"problems", v.problems},
           {"variants", v.variants},         {"runs", v.runs},
           {"measurements", v.measurements}, {"best_configs", v.best_configs},
           {"binaries", v.binaries}};
}

void to_json(json& j, const VerifyReport& v) {
  j = json{{"ok", v.ok},
           {"schema_version", v.schema_version},
           {"integrity_errors", v.integrity_errors},
           {"foreign_key_errors", v.foreign_key_errors},
           {"row_counts", v.row_counts}};
}

}  // namespace parallax::cache
