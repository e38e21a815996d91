// Shared pieces of `parallax remote`: the flags describing a problem and a GPU, turned into
// the service's protos, and output as text or JSON.
#pragma once

#include <string>

#include <CLI/CLI.hpp>

#include "absl/status/statusor.h"
#include "parallax/v1/tuner.pb.h"

namespace parallax::cli {

struct ProblemFlags {
  std::string mode;
  std::string dtype = "bf16";
  int head_dim = 128;
  int q_heads = 32;
  int kv_heads = 8;
  int page_size = 0;
  bool window = false;
  std::string probe = "learned";
  std::string affine = "plain";
  int batch = 1;
  int seqlen = 4096;
  int context_len = 0;  // prefill: keys per sequence; 0 = seqlen
};
// `required_mode`: false when the problem may come from a file instead.
void AddProblemFlags(CLI::App& cmd, ProblemFlags& f, bool required_mode);
v1::Problem ToProto(const ProblemFlags& f);
// A JSON array of Problem objects in the proto's JSON form (as `remote get --json` prints them).
absl::StatusOr<std::vector<v1::Problem>> ProblemsFromJsonFile(const std::string& path);

struct DeviceFlags {
  int local_device = 0;
  std::string name;  // set: describe the GPU by hand instead of querying a local one
  std::string cc;    // "9.0"
  int sms = 0;
  int64_t mem_mib = 0;
  int driver = 0;     // optional: not part of the tuned-config key
  std::string nvrtc;
  bool list_devices = false;
};
void AddDeviceFlags(CLI::App& cmd, DeviceFlags& f);
// From the flags (a known GPU's name alone will do: runtime/known_devices.h; other names need
// --cc, --sms and --mem-mib, all missing ones named at once), else from the local GPU
// `local_device` (needs a driver).
absl::StatusOr<v1::DeviceFingerprint> ResolveDevice(const DeviceFlags& f);
// --list-devices: the known GPUs as a table, or JSON.
int PrintKnownDevices(bool json);

// One message as JSON (proto field names, defaults included).
std::string ToJson(const google::protobuf::Message& m, bool pretty);
std::string DescribeProgress(const v1::JobProgress& p);
void PrintBestConfig(const v1::GetBestConfigResponse& r);
void PrintConfigs(const v1::ListConfigsResponse& r);
void PrintImport(const v1::ImportResultsResponse& r, const std::string& file);
void PrintJobs(const v1::ListJobsResponse& r);

}  // namespace parallax::cli
