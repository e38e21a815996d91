#include "parallax/service/validate.h"

#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "parallax/codegen/space.h"
#include "parallax/runtime/device.h"
#include "parallax/runtime/nvrtc_compiler.h"
#include "parallax/service/buckets.h"
#include "parallax/service/proto_convert.h"

namespace parallax::service {
namespace {

constexpr int kMaxBatch = 1 << 20;
constexpr int kMaxSeqlen = 1 << 26;

absl::Status Bad(absl::string_view path, absl::string_view field, absl::string_view rule) {
  return absl::InvalidArgumentError(absl::StrCat(path, ".", field, ": ", rule));
}

absl::Status BadValue(absl::string_view path, absl::string_view field, int64_t value,
                      absl::string_view rule) {
  return absl::InvalidArgumentError(absl::StrCat(path, ".", field, "=", value, ": ", rule));
}

// Names become part of the fingerprint string ("name|sm_90|..."), so '|' and control
// characters are refused rather than escaped.
absl::Status CheckText(absl::string_view path, absl::string_view field, const std::string& text,
                       const ServiceLimits& limits, bool required) {
  if (required && text.empty()) return Bad(path, field, "required");
  if (static_cast<int64_t>(text.size()) > limits.max_string_bytes)
    return Bad(path, field, absl::StrCat("longer than ", limits.max_string_bytes, " bytes"));
  for (char c : text)
    if (c == '|' || absl::ascii_iscntrl(static_cast<unsigned char>(c)))
      return Bad(path, field, "must not contain '|' or control characters");
  return absl::OkStatus();
}

}  // namespace

Strategy FromProto(v1::Strategy s) {
  switch (s) {
    case v1::STRATEGY_EXHAUSTIVE: return Strategy::kExhaustive;
    case v1::STRATEGY_RANDOM: return Strategy::kRandom;
    default: return Strategy::kGuided;  // unspecified: the server's default
  }
}

v1::Strategy ToProto(Strategy s) {
  switch (s) {
    case Strategy::kExhaustive: return v1::STRATEGY_EXHAUSTIVE;
    case Strategy::kRandom: return v1::STRATEGY_RANDOM;
    case Strategy::kGuided: break;
  }
  return v1::STRATEGY_GUIDED;
}

absl::StatusOr<ProblemSpec> ValidateProblem(const v1::Problem& p, absl::string_view path) {
  ProblemSpec s;
  absl::StatusOr<Mode> mode = ModeFromProto(p.mode());
  if (!mode.ok()) return Bad(path, "mode", mode.status().message());
  s.problem.mode = *mode;
  switch (p.dtype()) {
    case v1::DTYPE_BF16: s.problem.dtype = DType::kBF16; break;
    case v1::DTYPE_FP16: s.problem.dtype = DType::kFP16; break;
    default: return Bad(path, "dtype", "required: DTYPE_BF16 or DTYPE_FP16");
  }
  switch (p.kv_layout()) {
    case v1::KV_LAYOUT_CONTIGUOUS: s.problem.kv_layout = KvLayout::kContiguous; break;
    case v1::KV_LAYOUT_PAGED: s.problem.kv_layout = KvLayout::kPaged; break;
    default: return Bad(path, "kv_layout", "required: KV_LAYOUT_CONTIGUOUS or KV_LAYOUT_PAGED");
  }
  switch (p.probe()) {
    case v1::PROBE_NONE: s.algorithm.probe = Probe::kNone; break;
    case v1::PROBE_LEARNED: s.algorithm.probe = Probe::kLearned; break;
    default: return Bad(path, "probe", "required: PROBE_NONE or PROBE_LEARNED");
  }
  switch (p.affine()) {
    case v1::AFFINE_PLAIN: s.algorithm.affine = Affine::kPlain; break;
    case v1::AFFINE_AMPLIFIED: s.algorithm.affine = Affine::kAmplified; break;
    default: return Bad(path, "affine", "required: AFFINE_PLAIN or AFFINE_AMPLIFIED");
  }
  s.problem.head_dim = p.head_dim();
  s.problem.num_q_heads = p.num_q_heads();
  s.problem.num_kv_heads = p.num_kv_heads();
  s.problem.page_size = p.page_size();
  s.problem.window = p.window();
  if (p.batch() < 1 || p.batch() > kMaxBatch)
    return BadValue(path, "batch", p.batch(), absl::StrCat("must be in 1..", kMaxBatch));
  if (p.seqlen() < 1 || p.seqlen() > kMaxSeqlen)
    return BadValue(path, "seqlen", p.seqlen(), absl::StrCat("must be in 1..", kMaxSeqlen));
  s.batch = p.batch();
  s.seqlen = p.seqlen();
  // Prefill and its backward bucket on query tokens and context length (bucket.h);
  // context_len 0 is a full causal prefill. Decode has no second length: seqlen is its key count.
  if (UsesPrefillBuckets(s.problem.mode)) {
    s.context_len = p.context_len() == 0 ? p.seqlen() : p.context_len();
    if (s.context_len < s.seqlen || s.context_len > kMaxSeqlen)
      return BadValue(path, "context_len", p.context_len(),
                      absl::StrCat(ToString(s.problem.mode), ": 0 (= seqlen) or in seqlen..", kMaxSeqlen));
    s.shape_bucket = PrefillBucketFor(s.batch, s.seqlen, s.context_len);
  } else {
    if (p.context_len() != 0)
      return BadValue(path, "context_len", p.context_len(), "decode: must be 0 (seqlen is the key count)");
    s.shape_bucket = BucketFor(s.batch, s.seqlen);
  }
  // A valid default variant proves the problem valid (the hot path: one Create). The portable
  // family's (sm 0): every valid problem has one whatever the device, and a job's problems
  // have no device yet; a device's own default is DeviceDefaultKey (buckets.h). Otherwise
  // the IR's problem-only check names the field first ("head_dim=96: ..."); prefix the path.
  absl::StatusOr<Variant> def = DefaultVariant(s.problem, s.algorithm, 0);
  if (!def.ok()) {
    absl::Status st = ValidateProblemOnly(s.problem, s.algorithm);
    if (st.ok()) st = def.status();
    return absl::InvalidArgumentError(absl::StrCat(path, ".", st.message()));
  }
  s.problem_key = ProblemKey(s.problem, s.algorithm);
  s.default_variant_key = def->Key();
  s.bucket = ToString(s.shape_bucket);
  return s;
}

absl::StatusOr<std::string> ValidateDevice(const v1::DeviceFingerprint& d, absl::string_view path,
                                           const ServiceLimits& limits) {
  if (absl::Status st = CheckText(path, "name", d.name(), limits, true); !st.ok()) return st;
  if (d.cc_major() < 1 || d.cc_major() > 99)
    return BadValue(path, "cc_major", d.cc_major(), "must be in 1..99");
  if (d.cc_minor() < 0 || d.cc_minor() > 9)
    return BadValue(path, "cc_minor", d.cc_minor(), "must be in 0..9");
  if (d.sm_count() < 1 || d.sm_count() > 100000)
    return BadValue(path, "sm_count", d.sm_count(), "must be in 1..100000");
  if (d.memory_bytes() < (int64_t{1} << 20))
    return BadValue(path, "memory_bytes", d.memory_bytes(), "must be at least 1 MiB");
  // Optional (0: not given): tuned configs are not keyed by the driver (cache/device_key.h).
  if (d.driver_version() < 0) return BadValue(path, "driver_version", d.driver_version(), "must be >= 0");
  if (absl::Status st = CheckText(path, "nvrtc_version", d.nvrtc_version(), limits, true); !st.ok())
    return st;
  if (absl::StatusOr<int> n = ParseNvrtcVersion(d.nvrtc_version()); !n.ok())
    return absl::InvalidArgumentError(absl::StrCat(path, ".", n.status().message()));
  return DeviceFromProto(d).fingerprint();
}

absl::StatusOr<LookupQuery> ValidateLookup(const v1::GetBestConfigRequest& r,
                                           const ServiceLimits& limits) {
  if (!r.has_device()) return absl::InvalidArgumentError("device: required");
  if (!r.has_problem()) return absl::InvalidArgumentError("problem: required");
  if (r.generator_version() < 0)
    return absl::InvalidArgumentError(
        absl::StrCat("generator_version=", r.generator_version(), ": must be >= 0 (0: the server's)"));
  LookupQuery q;
  absl::StatusOr<std::string> fp = ValidateDevice(r.device(), "device", limits);
  if (!fp.ok()) return fp.status();
  q.device_fingerprint = *std::move(fp);
  q.device_sm = r.device().cc_major() * 10 + r.device().cc_minor();
  absl::StatusOr<ProblemSpec> spec = ValidateProblem(r.problem(), "problem");
  if (!spec.ok()) return spec.status();
  q.spec = *std::move(spec);
  q.versions.generator_version = r.generator_version() > 0 ? r.generator_version() : kGeneratorVersion;
  q.versions.nvrtc_version = *ParseNvrtcVersion(r.device().nvrtc_version());
  return q;
}

absl::StatusOr<JobSpec> ValidateSubmit(const v1::SubmitTuningRequest& r, const ServiceLimits& limits) {
  JobSpec job;
  if (r.resume_job_id() < 0)
    return absl::InvalidArgumentError(absl::StrCat("resume_job_id=", r.resume_job_id(), ": must be >= 0"));
  job.resumed_from_job_id = r.resume_job_id();
  if (r.resume_job_id() > 0) {
    // The resumed job's parameters are used as they were; anything else would be ignored.
    if (r.problems_size() > 0)
      return absl::InvalidArgumentError("problems: must be empty when resume_job_id is set");
  } else {
    if (r.problems_size() == 0) return absl::InvalidArgumentError("problems: at least one required");
    if (r.problems_size() > limits.max_problems_per_request)
      return absl::InvalidArgumentError(absl::StrCat("problems: ", r.problems_size(),
                                                     " given, at most ", limits.max_problems_per_request,
                                                     " per request"));
    for (int i = 0; i < r.problems_size(); ++i) {
      absl::StatusOr<ProblemSpec> spec = ValidateProblem(r.problems(i), absl::StrCat("problems[", i, "]"));
      if (!spec.ok()) return spec.status();
      job.problems.push_back(*std::move(spec));
    }
  }
  const bool keep_budget = job.resumed_from_job_id > 0 && r.budget_seconds() == 0;  // resume: original
  if (!keep_budget && (!std::isfinite(r.budget_seconds()) || r.budget_seconds() <= 0 ||
                       r.budget_seconds() > limits.max_budget_seconds))
    return absl::InvalidArgumentError(absl::StrCat("budget_seconds=", r.budget_seconds(),
                                                   ": must be in (0, ", limits.max_budget_seconds, "]"));
  job.budget_seconds = r.budget_seconds();
  if (!v1::Strategy_IsValid(r.strategy()))
    return absl::InvalidArgumentError(absl::StrCat("strategy=", static_cast<int>(r.strategy()), ": unknown"));
  job.strategy = FromProto(r.strategy());
  job.device_ordinal = -1;  // any
  if (r.target_case() == v1::SubmitTuningRequest::kDeviceOrdinal) {
    if (r.device_ordinal() < 0)
      return absl::InvalidArgumentError(absl::StrCat("device_ordinal=", r.device_ordinal(), ": must be >= 0"));
    job.device_ordinal = r.device_ordinal();
  } else if (r.target_case() == v1::SubmitTuningRequest::kAnyDevice && !r.any_device()) {
    return absl::InvalidArgumentError("any_device: set it to true or set device_ordinal");
  }
  return job;
}

v1::Problem ToProto(const ProblemSpec& s) {
  return ProblemToProto(s.problem, s.algorithm, s.batch, s.seqlen, s.context_len);
}

}  // namespace parallax::service
