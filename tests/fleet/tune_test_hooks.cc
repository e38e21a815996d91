// `parallax tune`'s test hooks (service/cli/test_hooks.h), linked into test builds of the CLI
// only (tests/search's plx_search_cli): a fake GPU and worker named by the environment.
#include "test_hooks.h"

#include <algorithm>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "fake_gpu.h"

namespace parallax::cli {

absl::Status ApplyTuneTestHooks(search::TuneOptions& options, search::TuneDeps& deps) {
  const char* gpu = std::getenv("PARALLAX_TEST_FAKE_GPU");
  const char* worker = std::getenv("PARALLAX_TEST_WORKER");
  if (gpu == nullptr || *gpu == '\0') {
    if (worker != nullptr && *worker != '\0') options.worker_argv = {worker};
    return absl::OkStatus();
  }
  if (worker == nullptr || *worker == '\0')
    return absl::InvalidArgumentError("PARALLAX_TEST_FAKE_GPU needs PARALLAX_TEST_WORKER (a fake worker to run)");
  options.worker_argv = {worker};
  int count = 1;  // as many as Slurm's --gres=gpu:N shows the task
  if (const char* cvd = std::getenv("CUDA_VISIBLE_DEVICES"); cvd != nullptr && *cvd != '\0') {
    const std::vector<std::string> ids = absl::StrSplit(cvd, ',', absl::SkipEmpty());
    count = std::max<int>(1, static_cast<int>(ids.size()));
  }
  deps.devices.clear();
  for (int i = 0; i < count; ++i) deps.devices.push_back(testing::FakeH100(i, gpu));
  deps.make_compile = [](const search::CompileTarget&) {  // nothing compiled: every candidate kept
    return search::CompileFn([](const std::vector<Variant>&) {
      search::CompileOutcome c;
      c.kind = search::CompileOutcome::Kind::kKeep;
      return c;
    });
  };
  return absl::OkStatus();
}

}  // namespace parallax::cli
