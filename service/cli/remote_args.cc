#include "remote_args.h"

#include <google/protobuf/util/json_util.h>
#include <nlohmann/json.hpp>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "cli_io.h"
#include "parallax/runtime/device.h"
#include "parallax/runtime/nvrtc_compiler.h"
#include "parallax/service/proto_convert.h"

namespace parallax::cli {

void AddProblemFlags(CLI::App& cmd, ProblemFlags& f, bool required_mode) {
  CLI::Option* mode = cmd.add_option("--mode", f.mode, "decode or prefill")->check(CLI::IsMember({"decode", "prefill"}));
  if (required_mode) mode->required();
  cmd.add_option("--dtype", f.dtype, "bf16 or fp16")->capture_default_str()->check(CLI::IsMember({"bf16", "fp16"}));
  cmd.add_option("--head-dim", f.head_dim, "Head dimension: 64, 128 or 256")->capture_default_str();
  cmd.add_option("--q-heads", f.q_heads, "Query heads")->capture_default_str();
  cmd.add_option("--kv-heads", f.kv_heads, "KV heads")->capture_default_str();
  cmd.add_option("--paged", f.page_size, "Paged KV cache with N keys per page (decode only)")->check(CLI::PositiveNumber);
  cmd.add_flag("--window", f.window, "Sliding window compiled in");
  cmd.add_option("--probe", f.probe, "none (softmax) or learned (Parallax)")
      ->capture_default_str()->check(CLI::IsMember({"none", "learned"}));
  cmd.add_option("--affine", f.affine, "plain or amplified")
      ->capture_default_str()->check(CLI::IsMember({"plain", "amplified"}));
  cmd.add_option("--batch", f.batch, "Batch size (bucketed to a power of two)")->capture_default_str();
  cmd.add_option("--seqlen", f.seqlen,
                 "Keys per sequence (decode; bucketed to a power of two >= 1024) or queries per sequence "
                 "(prefill)")->capture_default_str();
  cmd.add_option("--context-len", f.context_len,
                 "Prefill: keys per sequence, >= --seqlen (a chunk at the end of the context); 0 = --seqlen. "
                 "A prefill is bucketed on batch x seqlen query tokens and this context (\"t4096-l8192\")")
      ->capture_default_str();
}

v1::Problem ToProto(const ProblemFlags& f) {
  v1::Problem p;
  p.set_mode(f.mode == "prefill" ? v1::MODE_PREFILL : v1::MODE_DECODE);
  p.set_dtype(f.dtype == "fp16" ? v1::DTYPE_FP16 : v1::DTYPE_BF16);
  p.set_head_dim(f.head_dim);
  p.set_num_q_heads(f.q_heads);
  p.set_num_kv_heads(f.kv_heads);
  p.set_kv_layout(f.page_size > 0 ? v1::KV_LAYOUT_PAGED : v1::KV_LAYOUT_CONTIGUOUS);
  p.set_page_size(f.page_size);
  p.set_window(f.window);
  p.set_probe(f.probe == "none" ? v1::PROBE_NONE : v1::PROBE_LEARNED);
  p.set_affine(f.affine == "amplified" ? v1::AFFINE_AMPLIFIED : v1::AFFINE_PLAIN);
  p.set_batch(f.batch);
  p.set_seqlen(f.seqlen);
  p.set_context_len(f.context_len);
  return p;
}

absl::StatusOr<std::vector<v1::Problem>> ProblemsFromJsonFile(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFile(path);
  if (!text.ok()) return text.status();
  const nlohmann::json j = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_array()) return absl::InvalidArgumentError(absl::StrCat(path, ": expected a JSON array of problems"));
  std::vector<v1::Problem> out;
  for (size_t i = 0; i < j.size(); ++i) {
    v1::Problem p;
    if (!google::protobuf::util::JsonStringToMessage(j[i].dump(), &p).ok())
      return absl::InvalidArgumentError(absl::StrCat(path, ": problem ", i, " is not a valid Problem"));
    out.push_back(std::move(p));
  }
  return out;
}

void AddDeviceFlags(CLI::App& cmd, DeviceFlags& f) {
  cmd.add_option("--local-device", f.local_device, "Local GPU whose identity to send (default 0)")->capture_default_str();
  cmd.add_option("--device-name", f.name, "Describe the GPU by hand instead (with --cc, --sms, --mem-mib, ...)");
  cmd.add_option("--cc", f.cc, "Compute capability, e.g. 9.0");
  cmd.add_option("--sms", f.sms, "SM count");
  cmd.add_option("--mem-mib", f.mem_mib, "Device memory in MiB");
  cmd.add_option("--driver", f.driver, "CUDA driver version, e.g. 13000");
  cmd.add_option("--nvrtc", f.nvrtc, "NVRTC version, e.g. 13.0 (default: this build's)");
}

absl::StatusOr<v1::DeviceFingerprint> ResolveDevice(const DeviceFlags& f) {
  v1::DeviceFingerprint d;
  if (f.name.empty()) {
    absl::StatusOr<DeviceInfo> info = QueryDevice(f.local_device);
    if (!info.ok())
      return absl::InvalidArgumentError(absl::StrCat("no local GPU (", info.status().message(),
                                                     "); describe one with --device-name, --cc, --sms, --mem-mib, --driver"));
    return service::DeviceToProto(*info);
  }
  std::vector<std::string> cc = absl::StrSplit(f.cc, '.');
  int major = 0, minor = 0;
  if (cc.size() != 2 || !absl::SimpleAtoi(cc[0], &major) || !absl::SimpleAtoi(cc[1], &minor))
    return absl::InvalidArgumentError(absl::StrCat("--cc '", f.cc, "': expected major.minor, e.g. 9.0"));
  d.set_name(f.name);
  d.set_cc_major(major);
  d.set_cc_minor(minor);
  d.set_sm_count(f.sms);
  d.set_memory_bytes(f.mem_mib << 20);
  d.set_driver_version(f.driver);
  d.set_nvrtc_version(f.nvrtc.empty() ? NvrtcVersion() : f.nvrtc);
  return d;
}

}  // namespace parallax::cli
