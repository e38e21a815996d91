// The measuring worker: the process `parallax worker --device N` runs. It owns one GPU
// context, reads protocol.h requests on stdin and answers on stdout, one line each. The
// tuner runs it as a child so that a candidate that faults (the context is then unusable)
// or hangs costs only this process.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "parallax/codegen/variant.h"

namespace parallax::search {

struct WorkerMainOptions {
  int device = 0;
  std::string cache_dir;  // where the tuner left compiled kernels ("" = the runtime's default)
  // Measure test-only ("-testfault" / "-testhang") keys too: `--allow-test-variants`, which
  // the tuner passes only when it planted such keys (TuneOptions::allow_test_variants).
  bool allow_test_variants = false;
};

// The variant a measure request names; a test-only key is refused unless allowed.
absl::StatusOr<Variant> MeasuredVariant(const std::string& key, const WorkerMainOptions& o);

// Serves requests until "quit" or end of input; returns the process exit code (0 after
// quit/EOF, 3 after a fatal CUDA error, 1 when the device cannot be opened).
int RunWorker(const WorkerMainOptions& o);

}  // namespace parallax::search
