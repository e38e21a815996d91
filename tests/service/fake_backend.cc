#include "fake_backend.h"

#include <stdexcept>

#include "absl/strings/str_cat.h"
#include "parallax/runtime/runtime.h"
#include "parallax/service/validate.h"

namespace parallax::service::testing {

v1::DeviceFingerprint FakeBackend::Describe(int ordinal) {
  v1::DeviceFingerprint d;
  d.set_name(absl::StrCat("Fake GPU ", ordinal));
  d.set_cc_major(9);
  d.set_cc_minor(0);
  d.set_sm_count(132);
  d.set_memory_bytes(int64_t{80} << 30);
  d.set_driver_version(13000);
  d.set_nvrtc_version("13.0");
  return d;
}

absl::StatusOr<cache::DeviceInfo> FakeBackend::device(int ordinal) {
  const v1::DeviceFingerprint d = Describe(ordinal);
  absl::StatusOr<std::string> fp = ValidateDevice(d, "device", ServiceLimits{});
  if (!fp.ok()) return fp.status();
  cache::DeviceInfo info;
  info.fingerprint = *fp;
  info.name = d.name();
  info.cc_major = d.cc_major();
  info.cc_minor = d.cc_minor();
  info.sm_count = d.sm_count();
  info.mem_bytes = d.memory_bytes();
  info.driver_version = d.driver_version();
  info.nvrtc_version = 13000;
  return info;
}

std::string FakeBackend::BestKeyFor(const ProblemSpec& p) {
  // One stage fewer than the default keeps the variant valid and tells it apart.
  Schedule s = DefaultSchedule(p.problem, p.algorithm);
  s.stages = s.stages > 1 ? s.stages - 1 : 2;
  absl::StatusOr<Variant> v = Variant::Create(p.problem, p.algorithm, CanonicalSchedule(p.problem, p.algorithm, s));
  return v.ok() ? v->Key() : p.default_variant_key;
}

void FakeBackend::Release() {
  std::lock_guard lock(mu_);
  released_ = true;
  cv_.notify_all();
}

absl::Status FakeBackend::RunJob(const JobSpec& spec, ProgressSink& sink, const std::atomic<bool>& cancel) {
  ++started_;
  if (o_.throws) throw std::runtime_error("fake backend bug");
  ProgressUpdate u;
  u.variants_total = o_.steps * static_cast<int64_t>(spec.problems.size());
  u.best.resize(spec.problems.size());
  for (int step = 0; step < o_.steps; ++step) {
    if (cancel) return absl::CancelledError("cancelled");
    if (step == 1 && o_.hold) {
      // Poll the cancel flag: the service sets it without touching this condition variable.
      std::unique_lock lock(mu_);
      while (!released_ && !cancel) cv_.wait_for(lock, std::chrono::milliseconds(5));
      if (cancel) return absl::CancelledError("cancelled while held");
    }
    absl::SleepFor(o_.step_time);
    u.variants_tried = (step + 1) * static_cast<int64_t>(spec.problems.size());
    for (size_t i = 0; i < spec.problems.size(); ++i)
      u.best[i] = {BestKeyFor(spec.problems[i]), 100.0 - step};
    u.eta_seconds = absl::ToDoubleSeconds(o_.step_time) * (o_.steps - step - 1);
    u.message = absl::StrCat("step ", step + 1, " of ", o_.steps);
    sink.Update(u);
  }
  if (o_.fail) return absl::InternalError("fake tuner failure");
  for (size_t i = 0; i < spec.problems.size(); ++i) {
    cache::BestConfig c;
    c.device_fingerprint = spec.device_fingerprint;
    c.problem_key = spec.problems[i].problem_key;
    c.bucket = spec.problems[i].bucket;
    c.variant_key = u.best[i].variant_key;
    c.median_us = u.best[i].median_us;
    c.generator_version = kGeneratorVersion;
    c.nvrtc_version = 13000;
    if (absl::Status s = store_->SetBestConfig(c); !s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace parallax::service::testing
