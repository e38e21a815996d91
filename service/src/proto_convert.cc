#include "parallax/service/proto_convert.h"

namespace parallax::service {

// Every Mode has its own case (-Wswitch flags a new one left out).
v1::Mode ModeToProto(Mode m) {
  switch (m) {
    case Mode::kDecode: return v1::MODE_DECODE;
    case Mode::kPrefill: return v1::MODE_PREFILL;
    case Mode::kBackward: return v1::MODE_BACKWARD;
  }
  return v1::MODE_UNSPECIFIED;
}

absl::StatusOr<Mode> ModeFromProto(v1::Mode m) {
  switch (m) {
    case v1::MODE_DECODE: return Mode::kDecode;
    case v1::MODE_PREFILL: return Mode::kPrefill;
    case v1::MODE_BACKWARD: return Mode::kBackward;
    default: break;
  }
  return absl::InvalidArgumentError("required: MODE_DECODE, MODE_PREFILL or MODE_BACKWARD");
}

v1::Problem ProblemToProto(const Problem& s, const Algorithm& a, int batch, int seqlen, int context_len) {
  v1::Problem p;
  p.set_mode(ModeToProto(s.mode));
  p.set_dtype(s.dtype == DType::kBF16 ? v1::DTYPE_BF16 : v1::DTYPE_FP16);
  p.set_head_dim(s.head_dim);
  p.set_num_q_heads(s.num_q_heads);
  p.set_num_kv_heads(s.num_kv_heads);
  p.set_kv_layout(s.kv_layout == KvLayout::kPaged ? v1::KV_LAYOUT_PAGED : v1::KV_LAYOUT_CONTIGUOUS);
  p.set_page_size(s.page_size);
  p.set_window(s.window);
  p.set_probe(a.probe == Probe::kLearned ? v1::PROBE_LEARNED : v1::PROBE_NONE);
  p.set_affine(a.affine == Affine::kAmplified ? v1::AFFINE_AMPLIFIED : v1::AFFINE_PLAIN);
  p.set_batch(batch);
  p.set_seqlen(seqlen);
  p.set_context_len(context_len);
  return p;
}

v1::DeviceFingerprint DeviceToProto(const DeviceInfo& info) {
  v1::DeviceFingerprint d;
  d.set_name(info.name);
  d.set_cc_major(info.cc_major);
  d.set_cc_minor(info.cc_minor);
  d.set_sm_count(info.sm_count);
  d.set_memory_bytes(info.mem_bytes);
  d.set_driver_version(info.driver_version);
  d.set_nvrtc_version(info.nvrtc_version);
  return d;
}

DeviceInfo DeviceFromProto(const v1::DeviceFingerprint& d) {
  DeviceInfo info;
  info.name = d.name();
  info.cc_major = d.cc_major();
  info.cc_minor = d.cc_minor();
  info.sm_count = d.sm_count();
  info.mem_bytes = d.memory_bytes();
  info.driver_version = d.driver_version();
  info.nvrtc_version = d.nvrtc_version();
  return info;
}

}  // namespace parallax::service
