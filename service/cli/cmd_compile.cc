// `parallax compile`: NVRTC-compile one variant for one architecture and report what ptxas
// says about each kernel (registers, shared memory, stack, spills). Needs no GPU. The arch
// gets the variant's family suffix as the runtime and the tuner add it (a wgmma variant
// for sm_90 compiles for sm_90a); a family that does not run on the arch is refused.
#include <iostream>
#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cli_io.h"
#include "parallax/codegen/generator.h"
#include "parallax/codegen/kernel_family.h"
#include "parallax/runtime/nvrtc_compiler.h"
#include "parallax/search/pruning.h"
#include "registry.h"

namespace parallax::cli {
namespace {

struct CompileCmdOptions {
  std::string key;
  std::string arch = "sm_90";
  bool json = false;
  std::string cubin_path;
  bool line_info = false;
  int max_registers = 0;
  bool print_log = false;
};

// Dynamic shared memory is a launch parameter, not something ptxas sees: the main kernel
// asks for the variant's smem_bytes(), the split merge kernel for none.
int DynamicSmem(const Variant& v, const std::string& kernel) {
  return kernel == KernelNames::kDecodeMerge ? 0 : v.smem_bytes();
}

void PrintText(const Variant& v, const CompileOptions& co, const CompileResult& r) {
  std::cout << "variant  " << v.Key() << "\n"
            << absl::StrFormat("arch     %s   NVRTC %s   compile %.1f ms   cubin %d bytes\n", co.arch,
                               NvrtcVersion(), r.compile_ms, r.cubin.size())
            << absl::StrFormat("%-18s %5s %12s %13s %6s %12s %11s\n", "kernel", "regs", "static_smem",
                               "dynamic_smem", "stack", "spill_stores", "spill_loads");
  for (const KernelResources& k : r.kernels)
    std::cout << absl::StrFormat("%-18s %5d %12d %13d %6d %12d %11d\n", k.name, k.registers,
                                 k.smem_static_bytes, DynamicSmem(v, k.name), k.stack_bytes,
                                 k.spill_store_bytes, k.spill_load_bytes);
}

void PrintJson(const Variant& v, const CompileOptions& co, const CompileResult& r) {
  nlohmann::json kernels = nlohmann::json::array();
  for (const KernelResources& k : r.kernels)
    kernels.push_back({{"name", k.name},
                       {"registers", k.registers},
                       {"smem_static_bytes", k.smem_static_bytes},
                       {"smem_dynamic_bytes", DynamicSmem(v, k.name)},
                       {"stack_bytes", k.stack_bytes},
                       {"spill_store_bytes", k.spill_store_bytes},
                       {"spill_load_bytes", k.spill_load_bytes}});
  const nlohmann::json j = {{"key", v.Key()},          {"hash", v.HashHex()},
                            {"arch", co.arch},         {"nvrtc", NvrtcVersion()},
                            {"compile_ms", r.compile_ms}, {"cubin_bytes", r.cubin.size()},
                            {"kernels", kernels}};
  std::cout << j.dump(2) << "\n";
}

int RunCompile(const CompileCmdOptions& o) {
  absl::StatusOr<Variant> v = Variant::Parse(o.key);
  if (!v.ok()) return Fail(kExitUsage, v.status().message());
  const KernelFamily& family = FamilyOf(*v);
  if (std::optional<std::string> why = search::NotOnDeviceReason(family, o.arch))
    return Fail(kExitUsage, absl::StrCat(v->Key(), ": ", *why));
  CompileOptions co;
  co.arch = search::CompileArchFor(family, o.arch);
  co.line_info = o.line_info;
  co.max_registers = o.max_registers;
  absl::StatusOr<CompileResult> r = CompileCuda(GenerateSource(*v), v->Key() + ".cu", co);
  if (!r.ok()) {
    // The NVRTC log follows on its own lines: it is what the user needs to read.
    std::cerr << "parallax: compiling " << v->Key() << " for " << co.arch << " failed: "
              << r.status().message() << std::endl;
    return kExitFailure;
  }
  if (o.print_log) std::cerr << r->log << "\n";
  if (!o.cubin_path.empty()) {
    const absl::Status st = WriteFile(o.cubin_path, std::string_view(r->cubin.data(), r->cubin.size()));
    if (!st.ok()) return Fail(kExitFailure, st.message());
  }
  if (o.json) {
    PrintJson(*v, co, *r);
  } else {
    PrintText(*v, co, *r);
  }
  return kExitOk;
}

Action SetupCompile(CLI::App& cmd) {
  auto o = std::make_shared<CompileCmdOptions>();
  cmd.add_option("key", o->key, "Variant key (test-only -testfault / -testhang keys are refused)")->required();
  cmd.add_option("--arch", o->arch, "Target architecture: sm_80, sm_86, sm_89, sm_90 or sm_90a (a wgmma "
                                    "variant compiles for sm_90a either way)")
      ->capture_default_str()
      ->check([](const std::string& arch) {
        const absl::Status st = ValidateArch(arch);
        if (!st.ok()) return std::string(st.message());
        // cp.async, ldmatrix and bf16 mma.sync all need Ampere.
        if (arch < "sm_80" && arch.size() == 5) return arch + ": Parallax kernels need sm_80 or newer";
        return std::string();
      });
  cmd.add_flag("--json", o->json, "Print the report as JSON");
  cmd.add_option("--cubin", o->cubin_path, "Write the compiled cubin to FILE");
  cmd.add_flag("--line-info", o->line_info, "Compile with line info (for profilers)");
  cmd.add_option("--max-registers", o->max_registers, "Cap registers per thread (0: no cap)")
      ->check(CLI::Range(0, 255));
  cmd.add_flag("--log", o->print_log, "Also print the full NVRTC/ptxas log to stderr");
  return [o] { return RunCompile(*o); };
}

}  // namespace

PLX_REGISTER_COMMAND(compile, 20, "Compile a variant with NVRTC and report its resources", SetupCompile);

}  // namespace parallax::cli
