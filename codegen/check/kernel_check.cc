// Offline check of the kernel sources, run at build time (target codegen_kernels_compile):
//  1. every embedded .cuh has balanced (), [] and {} outside comments and literals, so each
//     file reads on its own;
//  2. for every registered family, variants covering both math paths, both probes, the
//     amplified affine, the window and every KV layout compile to PTX with NVRTC for sm_80
//     and sm_90 with an empty log: an error or a warning in a .cuh fails the build. Families
//     for one architecture (sm_90a) compile there to a cubin instead, so ptxas checks their
//     inline PTX too, and must neither spill nor have their MMAs serialized by ptxas.
// Exit status 0 when all pass; otherwise each failure is printed with its file or key.
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernel_text.h"
#include "parallax/codegen/generator.h"
#include "parallax/codegen/kernel_family.h"
#include "parallax/codegen/space.h"
#include "parallax/runtime/nvrtc_compiler.h"

namespace parallax {
namespace {

// "" when balanced, else what is wrong and the line. Skips // and /* */ comments and
// string and character literals.
std::string CheckBalanced(absl::string_view text) {
  std::vector<std::pair<char, int>> open;
  int line = 1;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    const char next = i + 1 < text.size() ? text[i + 1] : '\0';
    if (c == '\n') ++line;
    if (c == '/' && next == '/') {
      while (i < text.size() && text[i] != '\n') ++i;
      ++line;
    } else if (c == '/' && next == '*') {
      for (i += 2; i + 1 < text.size() && !(text[i] == '*' && text[i + 1] == '/'); ++i)
        if (text[i] == '\n') ++line;
      ++i;
    } else if (c == '"' || c == '\'') {
      for (++i; i < text.size() && text[i] != c; ++i)
        if (text[i] == '\\') ++i;
    } else if (c == '(' || c == '[' || c == '{') {
      open.push_back({c, line});
    } else if (c == ')' || c == ']' || c == '}') {
      const char want = c == ')' ? '(' : c == ']' ? '[' : '{';
      if (open.empty() || open.back().first != want)
        return absl::StrCat("unmatched '", std::string(1, c), "' at line ", line);
      open.pop_back();
    }
  }
  if (!open.empty()) return absl::StrCat("'", std::string(1, open.back().first), "' of line ", open.back().second, " never closed");
  return "";
}

// The first valid variant of the family's space for each combination of the axes its
// sources branch on.
std::vector<Variant> CheckSet(const KernelFamily& f) {
  std::vector<Variant> out;
  int rotate = 0;
  for (MathPath path : f.paths())
    for (Algorithm a : {Algorithm{Probe::kNone, Affine::kPlain}, Algorithm{Probe::kLearned, Affine::kAmplified},
                        Algorithm{Probe::kLearned, Affine::kPlain}})
      for (bool window : {false, true})
        for (KvLayout layout : {KvLayout::kContiguous, KvLayout::kPaged})
          for (int head_dim : {128, 64, 256}) {
          // Every head dim for single-arch families (their register budget is tight); 128 elsewhere.
          if (head_dim != 128 && *f.ArchSuffix() == '\0') continue;
          Problem p;
          p.head_dim = head_dim;
          p.mode = f.mode();
          p.dtype = rotate++ % 2 ? DType::kFP16 : DType::kBF16;
          p.num_q_heads = 32;
          p.num_kv_heads = 8;
          p.window = window;
          p.kv_layout = layout;
          p.page_size = layout == KvLayout::kPaged ? 16 : 0;
          if (!ValidateProblemOnly(p, a).ok()) continue;  // e.g. paged prefill
          SpaceOptions o;
          o.paths = {path};
          const std::vector<Variant> space = EnumerateSpace(p, a, o);
          if (space.empty()) continue;
          Schedule s = f.Default(p, a);
          s.path = path;
          absl::StatusOr<Variant> v = Variant::Create(p, a, CanonicalSchedule(p, a, s));
          out.push_back(v.ok() ? *v : space.front());
          if (f.fields() & kFieldPingPong) {  // the other side of the ping-pong switch too
            s.pingpong = !s.pingpong;
            if (absl::StatusOr<Variant> w = Variant::Create(p, a, CanonicalSchedule(p, a, s)); w.ok())
              out.push_back(*w);
          }
        }
  return out;
}

int Run() {
  int failures = 0;
  for (int i = 0; i < kernel_text::kNumFiles; ++i) {
    const kernel_text::File& file = kernel_text::kAllFiles[i];
    if (std::string e = CheckBalanced(file.text); !e.empty()) {
      std::fprintf(stderr, "kernel check: codegen/%.*s: %s\n", static_cast<int>(file.path.size()),
                   file.path.data(), e.c_str());
      ++failures;
    }
  }
  int compiled = 0;
  for (const KernelFamily* f : AllFamilies()) {
    const std::vector<Variant> set = CheckSet(*f);
    if (set.empty()) {
      std::fprintf(stderr, "kernel check: family %.*s yields no variant to compile\n",
                   static_cast<int>(f->name().size()), f->name().data());
      ++failures;
    }
    if (*f->ArchSuffix() != '\0') {  // sm_90a only: a cubin, ptxas's report clean
      for (const Variant& v : set) {
        CompileOptions o;
        o.arch = "sm_90a";
        absl::StatusOr<CompileResult> bin = CompileCuda(GenerateSource(v), v.Key() + ".cu", o);
        ++compiled;
        // C7514: ptxas serialized the asynchronous MMAs; C7508: it ignored setmaxnreg.
        const bool serialized = bin.ok() && (bin->log.find("C7514") != std::string::npos ||
                                             bin->log.find("C7508") != std::string::npos);
        if (!bin.ok() || bin->has_spills() || serialized) {
          std::fprintf(stderr, "kernel check: %s (sm_90a): %s\n", v.Key().c_str(),
                       bin.ok() ? ("spills or serialized MMAs: " + bin->log).c_str()
                                : std::string(bin.status().message()).c_str());
          ++failures;
        }
      }
      continue;
    }
    for (const Variant& v : set)
      for (const char* arch : {"sm_80", "sm_90"}) {
        CompileOptions o;
        o.arch = arch;
        o.warnings_as_errors = true;
        absl::StatusOr<std::string> ptx = CompileToPtx(GenerateSource(v), v.Key() + ".cu", o);
        ++compiled;
        if (!ptx.ok()) {
          std::fprintf(stderr, "kernel check: %s (%s): %s\n", v.Key().c_str(), arch,
                       std::string(ptx.status().message()).c_str());
          ++failures;
        }
      }
  }
  // plx_merge_states (kernels/common/merge_states.cuh): every head dim and member, PTX for
  // both architectures with an empty log, and a cubin without spills.
  int rotate = 0;
  for (int head_dim : {64, 128, 256})
    for (Algorithm a : {Algorithm{Probe::kNone, Affine::kPlain}, Algorithm{Probe::kLearned, Affine::kPlain},
                        Algorithm{Probe::kLearned, Affine::kAmplified}}) {
      MergeKernel m;
      m.dtype = rotate++ % 2 ? DType::kFP16 : DType::kBF16;
      m.head_dim = head_dim;
      m.probe = a.probe;
      m.affine = a.affine;
      const std::string source = GenerateMergeSource(m);
      for (const char* arch : {"sm_80", "sm_90"}) {
        CompileOptions o;
        o.arch = arch;
        o.warnings_as_errors = true;
        absl::StatusOr<std::string> ptx = CompileToPtx(source, m.Key() + ".cu", o);
        absl::StatusOr<CompileResult> bin = CompileCuda(source, m.Key() + ".cu", CompileOptions{arch});
        compiled += 2;
        if (!ptx.ok() || !bin.ok() || bin->has_spills()) {
          std::fprintf(stderr, "kernel check: %s (%s): %s\n", m.Key().c_str(), arch,
                       !ptx.ok() ? std::string(ptx.status().message()).c_str()
                       : !bin.ok() ? std::string(bin.status().message()).c_str()
                                   : ("spills: " + bin->log).c_str());
          ++failures;
        }
      }
    }
  std::printf("kernel check: %d files, %d compiles, %d failures\n", kernel_text::kNumFiles, compiled, failures);
  return failures == 0 ? 0 : 1;
}

}  // namespace
}  // namespace parallax

int main() { return parallax::Run(); }
