#include "row_readers.h"

#include <nlohmann/json.hpp>

namespace parallax::cache::internal {
namespace {

// Stored JSON text that no longer parses is kept visible as a string rather than failing
// the whole listing.
nlohmann::json ParseStoredJson(const std::string& text) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  return j.is_discarded() ? nlohmann::json(text) : j;
}

}  // namespace

DeviceInfo ReadDevice(const Stmt& s) {
  DeviceInfo d;
  d.id = s.Int(0);
  d.fingerprint = s.Text(1);
  d.name = s.Text(2);
  d.sm_count = static_cast<int>(s.Int(3));
  d.cc_major = static_cast<int>(s.Int(4));
  d.cc_minor = static_cast<int>(s.Int(5));
  d.clock_khz = s.Int(6);
  d.mem_bytes = s.Int(7);
  d.l2_bytes = s.Int(8);
  d.driver_version = static_cast<int>(s.Int(9));
  d.nvrtc_version = static_cast<int>(s.Int(10));
  d.created_at = s.Int(11);
  return d;
}

absl::StatusOr<Measurement> ReadMeasurement(const Stmt& s) {
  Measurement m;
  m.id = s.Int(0);
  m.run_id = s.OptInt(1);
  m.device_id = s.Int(2);
  m.problem_id = s.Int(3);
  m.variant_id = s.Int(4);
  m.bucket = s.Text(5);
  absl::StatusOr<MeasurementStatus> status = ParseMeasurementStatus(s.Text(6));
  if (!status.ok()) return status.status();
  m.status = *status;
  m.median_us = s.OptDouble(7);
  m.min_us = s.OptDouble(8);
  m.max_us = s.OptDouble(9);
  m.reps = static_cast<int>(s.Int(10));
  m.error_text = s.Text(11);
  m.rel_error = s.OptDouble(12);
  m.measured_at = s.Int(13);
  m.generator_version = static_cast<int>(s.Int(14));
  m.nvrtc_version = static_cast<int>(s.Int(15));
  m.device_fingerprint = s.Text(16);
  m.problem_key = s.Text(17);
  m.variant_key = s.Text(18);
  return m;
}

BestConfig ReadBestConfig(const Stmt& s) {
  BestConfig b;
  b.device_fingerprint = s.Text(0);
  b.problem_key = s.Text(1);
  b.bucket = s.Text(2);
  b.variant_key = s.Text(3);
  b.median_us = s.Double(4);
  b.generator_version = static_cast<int>(s.Int(5));
  b.nvrtc_version = static_cast<int>(s.Int(6));
  b.updated_at = s.Int(7);
  return b;
}

BinaryEntry ReadBinary(const Stmt& s) {
  BinaryEntry e;
  e.key = s.Text(0);
  e.arch = s.Text(1);
  e.generator_version = static_cast<int>(s.Int(2));
  e.nvrtc_version = static_cast<int>(s.Int(3));
  e.driver_version = static_cast<int>(s.Int(4));
  e.source_hash = s.Text(5);
  e.cubin = s.Blob(6);
  e.log = s.Text(7);
  e.created_at = s.Int(8);
  return e;
}

absl::StatusOr<RunInfo> ReadRun(const Stmt& s) {
  RunInfo r;
  r.id = s.Int(0);
  r.device_id = s.Int(1);
  r.started_at = s.Int(2);
  r.finished_at = s.OptInt(3);
  absl::StatusOr<RunStatus> status = ParseRunStatus(s.Text(4));
  if (!status.ok()) return status.status();
  r.status = *status;
  r.params = ParseStoredJson(s.Text(5));
  r.progress = ParseStoredJson(s.Text(6));
  return r;
}

}  // namespace parallax::cache::internal
