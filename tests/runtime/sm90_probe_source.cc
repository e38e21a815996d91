#include "sm90_probe_source.h"

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"

namespace parallax::testing {
namespace {

// From the source tree this was built in, or (a copy of the tree on a GPU host, where the
// binary runs from the repository root) from the working directory.
absl::StatusOr<std::string> Read(const std::string& rel) {
  std::string path = absl::StrCat(PLX_SOURCE_DIR, "/", rel);
  std::ifstream in(path);
  if (!in) {
    path = rel;
    in.open(path);
  }
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", rel, " under ", PLX_SOURCE_DIR, " or ."));
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

absl::StatusOr<std::string> Sm90ProbeSource() {
  std::string src = "#define PLX_E16 \"bf16\"\n#define PLX_E16_BF16 1\n";
  for (const char* rel : {"codegen/kernels/common/prelude.cuh", "codegen/kernels/common/element16.cuh",
                          "codegen/kernels/sm90/async.cuh", "codegen/kernels/sm90/wgmma.cuh",
                          "tests/runtime/sm90_probe.cuh"}) {
    absl::StatusOr<std::string> text = Read(rel);
    if (!text.ok()) return text.status();
    absl::StrAppend(&src, *text, "\n");
  }
  return src;
}

}  // namespace parallax::testing
