// NVRTC: generated CUDA C++ -> cubin for one architecture, with ptxas's resource report.
// Needs only libnvrtc (no GPU, no driver, no toolkit headers).
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace parallax {

struct CompileOptions {
  std::string arch = "sm_90";  // sm_80, sm_86, sm_89, sm_90, sm_90a, ...
  bool line_info = false;
  int max_registers = 0;       // 0: no cap
  bool warnings_as_errors = false;  // CompileToPtx: any compiler message fails the compile
};

struct KernelResources {
  std::string name;
  int registers = 0;
  int smem_static_bytes = 0;
  int stack_bytes = 0;
  int spill_store_bytes = 0;
  int spill_load_bytes = 0;
};

struct CompileResult {
  std::vector<char> cubin;
  std::string log;                       // NVRTC + ptxas output
  double compile_ms = 0;
  std::vector<KernelResources> kernels;  // parsed from ptxas -v
  bool has_spills() const;
};

// "sm_90" -> ok; anything NVRTC would not accept -> InvalidArgument naming the arch.
absl::Status ValidateArch(const std::string& arch);
// NVRTC's version, e.g. "13.0".
std::string NvrtcVersion();

absl::StatusOr<CompileResult> CompileCuda(const std::string& source, const std::string& program_name,
                                          const CompileOptions& options);

// The PTX NVRTC emits for source on options.arch's virtual architecture (sm_90 -> compute_90),
// with CompileCuda's other options: what ptxas would assemble. For proving that a change to
// the generator leaves every kernel's code alone (scripts/ptx-digests.sh).
absl::StatusOr<std::string> CompileToPtx(const std::string& source, const std::string& program_name,
                                         const CompileOptions& options);

// Parses ptxas -v output ("Compiling entry function", "Used N registers", spills).
std::vector<KernelResources> ParsePtxasLog(const std::string& log);

// An NVRTC version in the tuning database's form: "major.minor" -> major * 1000 + minor * 10
// ("13.0" -> 13000), the form every stored config and binary carries. Anything else
// (major outside 1..99, minor outside 0..9, other text) is InvalidArgument naming nvrtc_version.
absl::StatusOr<int> ParseNvrtcVersion(const std::string& version);
// The same for a version this process reported (NvrtcVersion(), DeviceInfo::nvrtc_version),
// which always parses; 0, matching no stored entry, if it somehow does not.
int NvrtcVersionNumber(const std::string& version);

}  // namespace parallax
