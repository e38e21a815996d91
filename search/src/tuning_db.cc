#include "parallax/search/tuning_db.h"

#include <algorithm>
#include <filesystem>
#include <optional>

#include "absl/strings/str_cat.h"
#include "parallax/codegen/bucket.h"
#include "parallax/codegen/variant_json.h"

namespace parallax::search {

cache::DeviceInfo ToCacheDevice(const DeviceInfo& d) {
  cache::DeviceInfo c;
  c.fingerprint = d.fingerprint();
  c.name = d.name;
  c.sm_count = d.sm_count;
  c.cc_major = d.cc_major;
  c.cc_minor = d.cc_minor;
  c.clock_khz = d.clock_khz;
  c.mem_bytes = d.mem_bytes;
  c.l2_bytes = d.l2_bytes;
  c.driver_version = d.driver_version;
  c.nvrtc_version = NvrtcVersionNumber(d.nvrtc_version);
  return c;
}

absl::StatusOr<std::unique_ptr<TuningDb>> TuningDb::Open(const std::string& path) {
  std::error_code ec;
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  absl::StatusOr<std::unique_ptr<cache::Store>> s = cache::Store::Open(path);
  if (!s.ok()) return s.status();
  return std::unique_ptr<TuningDb>(new TuningDb(std::move(*s)));
}

absl::StatusOr<int64_t> TuningDb::DeviceId(const DeviceInfo& d) { return store_->UpsertDevice(ToCacheDevice(d)); }

absl::StatusOr<int64_t> TuningDb::ProblemId(const Problem& p, const Algorithm& a) {
  // The problem's JSON is the problem/algorithm part of any of its variants' JSON.
  absl::StatusOr<Variant> any = Variant::Create(p, a, CanonicalSchedule(p, a, Schedule{}));
  nlohmann::json j = nlohmann::json::object();
  if (any.ok()) {
    const nlohmann::json v = ToJson(*any);
    j = {{"problem", v["problem"]}, {"algorithm", v["algorithm"]}};
  }
  return store_->UpsertProblem(ProblemKey(p, a), j);
}

absl::StatusOr<int64_t> TuningDb::VariantId(const std::string& key) {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (auto it = variant_ids_.find(key); it != variant_ids_.end()) return it->second;
  }
  absl::StatusOr<int64_t> id = store_->UpsertVariant(key, kGeneratorVersion);
  if (!id.ok()) return id.status();
  std::lock_guard<std::mutex> l(mu_);
  variant_ids_[key] = *id;
  return *id;
}

absl::Status TuningDb::Record(const UnitKey& u, const std::string& variant_key, const Outcome& o) {
  const std::optional<cache::MeasurementStatus> status = ToCacheStatus(o.verdict);
  if (!status) return absl::OkStatus();  // pruned / cancelled: not measurements
  absl::StatusOr<int64_t> vid = VariantId(variant_key);
  if (!vid.ok()) return vid.status();
  cache::Measurement m;
  m.run_id = u.run_id;
  m.device_id = u.device_id;
  m.problem_id = u.problem_id;
  m.variant_id = *vid;
  m.bucket = u.bucket;
  m.status = *status;
  if (o.ok()) {
    m.median_us = o.median_us;
    m.min_us = o.min_us;
    m.max_us = o.max_us;
  }
  m.reps = o.reps;
  m.error_text = o.error;
  m.rel_error = o.rel_error;
  m.generator_version = kGeneratorVersion;
  m.nvrtc_version = u.nvrtc_version;
  absl::StatusOr<int64_t> id = store_->RecordMeasurement(m);
  return id.ok() ? absl::OkStatus() : id.status();
}

absl::StatusOr<std::vector<Trial>> TuningDb::Earlier(const UnitKey& u) {
  cache::MeasurementFilter f;
  f.device_fingerprint = u.fingerprint;
  f.problem_key = u.problem_key;
  f.bucket = u.bucket;
  f.generator_version = kGeneratorVersion;
  absl::StatusOr<std::vector<cache::Measurement>> rows = store_->ListMeasurements(f);
  if (!rows.ok()) return rows.status();
  std::vector<Trial> out;
  for (const cache::Measurement& m : *rows) {
    if (m.nvrtc_version != u.nvrtc_version) continue;  // another compiler: other binaries
    Outcome o;
    o.verdict = FromCacheStatus(m.status);
    o.median_us = m.median_us.value_or(0);
    o.min_us = m.min_us.value_or(0);
    o.max_us = m.max_us.value_or(0);
    o.reps = m.reps;
    o.rel_error = m.rel_error;
    o.error = m.error_text;
    o.cached = true;
    out.push_back({m.variant_key, std::move(o)});
  }
  return out;
}

absl::StatusOr<std::optional<Trial>> TuningDb::StoreBest(const UnitKey& u) {
  absl::StatusOr<std::vector<Trial>> trials = Earlier(u);
  if (!trials.ok()) return trials.status();
  std::optional<Trial> best = PickBest(*trials);
  if (!best) return best;
  cache::BestConfig c;
  c.device_fingerprint = u.fingerprint;
  c.problem_key = u.problem_key;
  c.bucket = u.bucket;
  c.variant_key = best->key;
  c.median_us = best->outcome.median_us;
  c.generator_version = kGeneratorVersion;
  c.nvrtc_version = u.nvrtc_version;
  if (absl::Status s = store_->SetBestConfig(c); !s.ok()) return s;
  return best;
}

}  // namespace parallax::search
