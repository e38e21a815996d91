// Prints one line per (representative variant, arch): "<arch> <xxh3 of the PTX> <key>".
// Two trees whose outputs are equal emit the same PTX for every kernel of the set, so a
// refactor of the generator can be shown to change nothing (scripts/ptx-digests.sh).
// Needs libnvrtc only. Usage: codegen_ptx_digests [--dump DIR] [arch ...]
// (default archs: sm_80 sm_90); --dump also writes each PTX to DIR/<arch>.<key>.ptx.
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "parallax/codegen/generator.h"
#include "parallax/codegen/variant.h"
#include "parallax/runtime/nvrtc_compiler.h"
#include "representative.h"
#include "xxhash.h"

int main(int argc, char** argv) {
  std::vector<std::string> archs(argv + 1, argv + argc);
  std::string dump;
  if (archs.size() >= 2 && archs[0] == "--dump") {
    dump = archs[1];
    archs.erase(archs.begin(), archs.begin() + 2);
  }
  if (archs.empty()) archs = {"sm_80", "sm_90"};
  if (archs[0] == "--help" || archs[0] == "-h") {
    std::printf("usage: codegen_ptx_digests [--dump DIR] [arch ...]   (default: sm_80 sm_90)\n"
                "One line per representative variant and arch: arch, xxh3-64 of its PTX, key.\n"
                "--dump DIR also writes each PTX to DIR/<arch>.<key>.ptx.\n");
    return 0;
  }
  int failures = 0;
  for (const std::string& arch : archs) {
    for (const std::string& key : parallax::RepresentativeKeys()) {
      absl::StatusOr<parallax::Variant> v = parallax::Variant::Parse(key);
      if (!v.ok()) {
        std::fprintf(stderr, "%s: %s\n", key.c_str(), std::string(v.status().message()).c_str());
        ++failures;
        continue;
      }
      parallax::CompileOptions o;
      o.arch = arch;
      absl::StatusOr<std::string> ptx = parallax::CompileToPtx(parallax::GenerateSource(*v), key + ".cu", o);
      if (!ptx.ok()) {
        std::fprintf(stderr, "%s %s: %s\n", arch.c_str(), key.c_str(), std::string(ptx.status().message()).c_str());
        ++failures;
        continue;
      }
      if (!dump.empty()) std::ofstream(dump + "/" + arch + "." + key + ".ptx") << *ptx;
      std::printf("%s %016llx %s\n", arch.c_str(),
                  static_cast<unsigned long long>(XXH3_64bits(ptx->data(), ptx->size())), key.c_str());
      std::fflush(stdout);
    }
  }
  return failures == 0 ? 0 : 1;
}
