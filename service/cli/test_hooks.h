// Test-only hooks of `parallax tune`, compiled into test builds of the CLI alone: the target
// that defines PLX_CLI_TEST_HOOKS links their implementation, tests/fleet/tune_test_hooks.cc
// (tests/search's plx_search_cli). The `parallax` executable has neither, so nothing here can
// change what users run.
//
//   PARALLAX_TEST_FAKE_GPU=NAME  tune on fake H100-shaped GPUs named NAME, one per entry of
//                                $CUDA_VISIBLE_DEVICES (as Slurm's --gres=gpu:N sets it), else
//                                one; nothing is compiled (every candidate is kept, no NVRTC)
//   PARALLAX_TEST_WORKER=PATH    the measuring worker instead of `<this executable> worker`
//                                (tests/search's plx_fake_worker); needed with the fake GPU
//
// The Slurm fleet test (tests/fleet) runs `tune` end to end on CPU-only machines through them.
#pragma once

#include "absl/status/status.h"
#include "parallax/search/tuner.h"

namespace parallax::cli {

// Applies the hooks the environment asks for; InvalidArgument for an incomplete request.
absl::Status ApplyTuneTestHooks(search::TuneOptions& options, search::TuneDeps& deps);

}  // namespace parallax::cli
