// `parallax worker` (hidden): the measuring process `parallax tune` starts once per GPU and
// talks to over stdin/stdout (search/protocol.h). Not meant to be run by hand.
#include <memory>
#include <string>

#include "parallax/search/worker.h"
#include "parallax/search/logging.h"
#include "registry.h"

namespace parallax::cli {
namespace {

Action SetupWorker(CLI::App& cmd) {
  auto o = std::make_shared<search::WorkerMainOptions>();
  cmd.group("");  // hidden from --help: an implementation detail of `tune`
  cmd.add_option("--device", o->device, "CUDA device ordinal")->check(CLI::NonNegativeNumber);
  cmd.add_option("--cache-dir", o->cache_dir, "Where the tuner left compiled kernels");
  cmd.add_flag("--allow-test-variants", o->allow_test_variants,
               "Also measure test-only -testfault / -testhang keys (passed by `tune --test-faults`)");
  return [o] {
    search::LogToStderr();  // stdout carries the protocol
    return search::RunWorker(*o);
  };
}

}  // namespace

PLX_REGISTER_COMMAND(worker, 90, "Measuring worker run by `parallax tune` (internal)", SetupWorker);

}  // namespace parallax::cli
