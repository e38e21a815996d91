#include "parallax/runtime/nvrtc_compiler.h"

#include <nvrtc.h>

#include <chrono>
#include <map>
#include <regex>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace parallax {
namespace {

struct ProgramDeleter {
  void operator()(nvrtcProgram p) const { nvrtcDestroyProgram(&p); }
};

absl::Status NvrtcError(nvrtcResult r, const std::string& what, const std::string& log = "") {
  std::string msg = absl::StrCat(what, ": ", nvrtcGetErrorString(r));
  if (!log.empty()) absl::StrAppend(&msg, "\n", log);
  return absl::InternalError(msg);
}

}  // namespace

bool CompileResult::has_spills() const {
  for (const auto& k : kernels)
    if (k.spill_store_bytes > 0 || k.spill_load_bytes > 0) return true;
  return false;
}

absl::Status ValidateArch(const std::string& arch) {
  // sm_80 is the floor: the kernels use cp.async, ldmatrix and bf16 mma.sync.
  static const std::regex kArch("sm_(8[0679]|90a?|1[02][0-9][af]?)");
  if (!std::regex_match(arch, kArch))
    return absl::InvalidArgumentError(
        absl::StrCat("arch=", arch, ": expected sm_80 or newer, such as sm_80, sm_89, sm_90 or sm_90a"));
  return absl::OkStatus();
}

std::string NvrtcVersion() {
  int major = 0, minor = 0;
  nvrtcVersion(&major, &minor);
  return absl::StrCat(major, ".", minor);
}

std::vector<KernelResources> ParsePtxasLog(const std::string& log) {
  static const std::regex kEntry(R"(Compiling entry function '([A-Za-z0-9_]+)')");
  static const std::regex kProps(R"(Function properties for ([A-Za-z0-9_]+))");
  static const std::regex kStack(R"((\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads)");
  static const std::regex kUsed(R"(Used (\d+) registers)");
  static const std::regex kSmem(R"((\d+) bytes smem)");
  std::map<std::string, KernelResources> by_name;
  std::vector<std::string> order;
  std::string current;
  std::istringstream in(log);
  std::string line;
  auto get = [&](const std::string& n) -> KernelResources& {
    auto [it, inserted] = by_name.try_emplace(n);
    if (inserted) {
      it->second.name = n;
      order.push_back(n);
    }
    return it->second;
  };
  std::smatch m;
  while (std::getline(in, line)) {
    if (std::regex_search(line, m, kEntry) || std::regex_search(line, m, kProps)) {
      current = m[1];
      get(current);
    } else if (!current.empty() && std::regex_search(line, m, kStack)) {
      KernelResources& k = get(current);
      k.stack_bytes = std::stoi(m[1]);
      k.spill_store_bytes = std::stoi(m[2]);
      k.spill_load_bytes = std::stoi(m[3]);
    } else if (!current.empty() && std::regex_search(line, m, kUsed)) {
      KernelResources& k = get(current);
      k.registers = std::stoi(m[1]);
      if (std::smatch s; std::regex_search(line, s, kSmem)) k.smem_static_bytes = std::stoi(s[1]);
    }
  }
  std::vector<KernelResources> out;
  for (const auto& n : order) out.push_back(by_name[n]);
  return out;
}

namespace {

std::vector<std::string> NvrtcOptions(const std::string& gpu_arch, const CompileOptions& options) {
  std::vector<std::string> opts = {
      absl::StrCat("--gpu-architecture=", gpu_arch), "--std=c++17", "--use_fast_math",
      "--ptxas-options=-v", "--device-as-default-execution-space", "-default-device"};
  if (options.line_info) opts.push_back("--generate-line-info");
  if (options.max_registers > 0) opts.push_back(absl::StrCat("--maxrregcount=", options.max_registers));
  return opts;
}

}  // namespace

absl::StatusOr<std::string> CompileToPtx(const std::string& source, const std::string& program_name,
                                         const CompileOptions& options) {
  if (absl::Status s = ValidateArch(options.arch); !s.ok()) return s;
  nvrtcProgram raw = nullptr;
  if (nvrtcResult r = nvrtcCreateProgram(&raw, source.c_str(), program_name.c_str(), 0, nullptr, nullptr);
      r != NVRTC_SUCCESS)
    return NvrtcError(r, "nvrtcCreateProgram");
  std::unique_ptr<_nvrtcProgram, ProgramDeleter> prog(raw);
  const std::vector<std::string> opts = NvrtcOptions("compute_" + options.arch.substr(3), options);
  std::vector<const char*> argv;
  for (const auto& o : opts) argv.push_back(o.c_str());
  if (nvrtcResult r = nvrtcCompileProgram(prog.get(), static_cast<int>(argv.size()), argv.data());
      r != NVRTC_SUCCESS) {
    size_t n = 0;
    nvrtcGetProgramLogSize(prog.get(), &n);
    std::string log(n, '\0');
    if (n > 0) nvrtcGetProgramLog(prog.get(), log.data());
    return NvrtcError(r, absl::StrCat("compiling ", program_name), log);
  }
  if (options.warnings_as_errors) {
    size_t n = 0;
    nvrtcGetProgramLogSize(prog.get(), &n);
    std::string log(n, '\0');
    if (n > 0) nvrtcGetProgramLog(prog.get(), log.data());
    while (!log.empty() && (log.back() == '\0' || log.back() == '\n')) log.pop_back();
    if (!log.empty())
      return absl::InvalidArgumentError(absl::StrCat("compiling ", program_name, ": warnings are errors\n", log));
  }
  size_t size = 0;
  if (nvrtcResult r = nvrtcGetPTXSize(prog.get(), &size); r != NVRTC_SUCCESS) return NvrtcError(r, "nvrtcGetPTXSize");
  std::string ptx(size, '\0');
  if (nvrtcResult r = nvrtcGetPTX(prog.get(), ptx.data()); r != NVRTC_SUCCESS) return NvrtcError(r, "nvrtcGetPTX");
  while (!ptx.empty() && ptx.back() == '\0') ptx.pop_back();
  return ptx;
}

absl::StatusOr<CompileResult> CompileCuda(const std::string& source, const std::string& program_name,
                                          const CompileOptions& options) {
  if (absl::Status s = ValidateArch(options.arch); !s.ok()) return s;
  const auto t0 = std::chrono::steady_clock::now();
  nvrtcProgram raw = nullptr;
  if (nvrtcResult r = nvrtcCreateProgram(&raw, source.c_str(), program_name.c_str(), 0, nullptr, nullptr);
      r != NVRTC_SUCCESS)
    return NvrtcError(r, "nvrtcCreateProgram");
  std::unique_ptr<_nvrtcProgram, ProgramDeleter> prog(raw);

  const std::vector<std::string> opts = NvrtcOptions(options.arch, options);
  std::vector<const char*> argv;
  for (const auto& o : opts) argv.push_back(o.c_str());

  const nvrtcResult cr = nvrtcCompileProgram(prog.get(), static_cast<int>(argv.size()), argv.data());
  CompileResult result;
  size_t log_size = 0;
  nvrtcGetProgramLogSize(prog.get(), &log_size);
  result.log.resize(log_size);
  if (log_size > 0) nvrtcGetProgramLog(prog.get(), result.log.data());
  while (!result.log.empty() && (result.log.back() == '\0' || result.log.back() == '\n'))
    result.log.pop_back();
  if (cr != NVRTC_SUCCESS) return NvrtcError(cr, absl::StrCat("compiling ", program_name), result.log);

  size_t cubin_size = 0;
  if (nvrtcResult r = nvrtcGetCUBINSize(prog.get(), &cubin_size); r != NVRTC_SUCCESS)
    return NvrtcError(r, "nvrtcGetCUBINSize");
  result.cubin.resize(cubin_size);
  if (nvrtcResult r = nvrtcGetCUBIN(prog.get(), result.cubin.data()); r != NVRTC_SUCCESS)
    return NvrtcError(r, "nvrtcGetCUBIN");
  result.kernels = ParsePtxasLog(result.log);
  result.compile_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  return result;
}

absl::StatusOr<int> ParseNvrtcVersion(const std::string& version) {
  std::vector<absl::string_view> parts = absl::StrSplit(version, '.');
  int major = 0, minor = 0;
  if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &major) || !absl::SimpleAtoi(parts[1], &minor) ||
      major < 1 || major > 99 || minor < 0 || minor > 9)
    return absl::InvalidArgumentError(
        absl::StrCat("nvrtc_version='", version, "': must be \"major.minor\", e.g. \"13.0\""));
  return major * 1000 + minor * 10;
}

int NvrtcVersionNumber(const std::string& version) { return ParseNvrtcVersion(version).value_or(0); }

}  // namespace parallax
