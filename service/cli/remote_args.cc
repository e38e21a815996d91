#include "remote_args.h"

#include <google/protobuf/util/json_util.h>
#include <nlohmann/json.hpp>

#include <iostream>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "cli_io.h"
#include "parallax/runtime/device.h"
#include "parallax/runtime/known_devices.h"
#include "parallax/runtime/nvrtc_compiler.h"
#include "parallax/service/proto_convert.h"

namespace parallax::cli {

void AddProblemFlags(CLI::App& cmd, ProblemFlags& f, bool required_mode) {
  CLI::Option* mode = cmd.add_option("--mode", f.mode, "decode, prefill or bwd (the backward of a prefill)")
                          ->check(CLI::IsMember({"decode", "prefill", "bwd"}));
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
                 "(prefill, bwd)")->capture_default_str();
  cmd.add_option("--context-len", f.context_len,
                 "Prefill and bwd: keys per sequence, >= --seqlen (a chunk at the end of the context); 0 = --seqlen. "
                 "A prefill is bucketed on batch x seqlen query tokens and this context (\"t4096-l8192\")")
      ->capture_default_str();
}

v1::Problem ToProto(const ProblemFlags& f) {
  v1::Problem p;
  p.set_mode(f.mode == "bwd" ? v1::MODE_BACKWARD : f.mode == "prefill" ? v1::MODE_PREFILL : v1::MODE_DECODE);
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
  cmd.add_option("--device-name", f.name,
                 "Describe a GPU instead of querying a local one: a known name alone (H200, H100, A100 80GB, ...; "
                 "see --list-devices), or any name with --cc, --sms and --mem-mib");
  cmd.add_option("--cc", f.cc, "Compute capability, e.g. 9.0 (overrides a known GPU's)");
  cmd.add_option("--sms", f.sms, "SM count (overrides a known GPU's)");
  cmd.add_option("--mem-mib", f.mem_mib, "Device memory in MiB (overrides a known GPU's; keyed in whole GiB)");
  cmd.add_option("--driver", f.driver, "CUDA driver version, e.g. 13000 (optional: not part of the key)");
  cmd.add_option("--nvrtc", f.nvrtc, "NVRTC version, e.g. 13.0 (default: this build's)");
  cmd.add_flag("--list-devices", f.list_devices, "Print the GPUs --device-name knows and exit (--json: as JSON)");
}

absl::StatusOr<v1::DeviceFingerprint> ResolveDevice(const DeviceFlags& f) {
  const bool described = !f.cc.empty() || f.sms != 0 || f.mem_mib != 0;
  if (f.name.empty()) {
    if (described)
      return absl::InvalidArgumentError("--cc, --sms and --mem-mib describe the GPU named by --device-name; give it");
    absl::StatusOr<DeviceInfo> info = QueryDevice(f.local_device);
    if (!info.ok())
      return absl::InvalidArgumentError(absl::StrCat(
          "no local GPU (", info.status().message(),
          "); name one with --device-name (a known GPU alone, e.g. --device-name H200: see --list-devices) "
          "or describe it with --device-name NAME --cc X.Y --sms N --mem-mib N"));
    return service::DeviceToProto(*info);
  }
  DeviceInfo d;
  const KnownDevice* known = FindKnownDevice(f.name);
  if (known != nullptr) {
    d = DeviceInfoOf(*known, f.nvrtc);
  } else {
    std::vector<std::string> missing;
    if (f.cc.empty()) missing.push_back("--cc");
    if (f.sms == 0) missing.push_back("--sms");
    if (f.mem_mib == 0) missing.push_back("--mem-mib");
    if (!missing.empty())
      return absl::InvalidArgumentError(absl::StrCat(
          "--device-name '", f.name, "' is not a known GPU (see --list-devices); to describe it, also give ",
          absl::StrJoin(missing, ", ")));
    d.name = f.name;
    d.nvrtc_version = f.nvrtc.empty() ? NvrtcVersion() : f.nvrtc;
  }
  std::vector<std::string> bad;
  if (!f.cc.empty()) {
    std::vector<std::string> cc = absl::StrSplit(f.cc, '.');
    if (cc.size() != 2 || !absl::SimpleAtoi(cc[0], &d.cc_major) || !absl::SimpleAtoi(cc[1], &d.cc_minor))
      bad.push_back(absl::StrCat("--cc '", f.cc, "': expected major.minor, e.g. 9.0"));
  }
  if (f.sms < 0) bad.push_back(absl::StrCat("--sms ", f.sms, ": must be >= 1"));
  else if (f.sms > 0) d.sm_count = f.sms;
  if (f.mem_mib < 0) bad.push_back(absl::StrCat("--mem-mib ", f.mem_mib, ": must be >= 1"));
  else if (f.mem_mib > 0) d.mem_bytes = f.mem_mib << 20;
  if (!bad.empty()) return absl::InvalidArgumentError(absl::StrJoin(bad, "; "));
  d.driver_version = f.driver;
  return service::DeviceToProto(d);
}

int PrintKnownDevices(bool json) {
  if (json) {
    nlohmann::json a = nlohmann::json::array();
    for (const KnownDevice& k : KnownDevices())
      a.push_back({{"name", k.name}, {"aliases", std::vector<std::string>(absl::StrSplit(k.aliases, ','))},
                   {"arch", absl::StrCat("sm_", k.cc_major, k.cc_minor)}, {"sm_count", k.sm_count},
                   {"mem_gib", k.mem_gib}, {"source", k.source},
                   {"fingerprint", DeviceInfoOf(k).fingerprint()}});
    std::cout << a.dump(2) << "\n";
    return 0;
  }
  std::cout << absl::StrFormat("%-24s %-6s %5s %7s  %-9s %s\n", "name", "arch", "SMs", "memory", "source", "also known as");
  for (const KnownDevice& k : KnownDevices())
    std::cout << absl::StrFormat("%-24s sm_%d%d %5d %4d GiB  %-9s %s\n", k.name, k.cc_major, k.cc_minor, k.sm_count,
                                 k.mem_gib, k.source, absl::StrReplaceAll(k.aliases, {{",", ", "}}));
  std::cout << "# --device-name takes a name or an alias (case, spaces and dashes do not matter); "
               "--cc/--sms/--mem-mib override a field\n";
  return 0;
}

}  // namespace parallax::cli
