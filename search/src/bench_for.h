// The bench of a problem's mode at one shape bucket: what the worker prepares and what the
// tuner sizes its watchdog by. A bench serves a mode, not a family (every family of a mode
// takes the same call arguments), so this is the one place the tuner picks one by mode.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "parallax/codegen/bucket.h"
#include "parallax/codegen/variant.h"
#include "parallax/runtime/runtime.h"
#include "parallax/search/bench.h"

namespace parallax::search::internal {

// Decode: batch x seqlen keys. Prefill: batch x q_len queries against seqlen keys, causal at
// the end, contiguous K/V, window BenchWindow() when the problem has one. Backward (bwd): the
// gradients of that prefill (BackwardBench).
absl::StatusOr<std::unique_ptr<Bench>> MakeBench(Runtime& rt, const Problem& p, const Algorithm& a,
                                                 const BucketShape& s, const BenchOptions& o);

// Bytes of one input set of that bench (InputSetBytes / PrefillInputSetBytes /
// BackwardInputSetBytes).
double BenchSetBytes(const Problem& p, const Algorithm& a, const BucketShape& s);

}  // namespace parallax::search::internal
