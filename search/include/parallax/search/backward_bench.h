// Timing and checking backward candidates (mode bwd, codegen/families/prefill_bwd) on the GPU
// in this process: what the tuner's worker prepares for a `bwd-...` problem. Sets, checks and
// timing are the harness every family shares (search/src/bench_harness.h); this bench supplies
// the backward's inputs and launch.
//
// The shape is a prefill's (B sequences of seqlen_q queries at the end of seqlen_k keys,
// causal, optionally windowed; contiguous K/V only: the backward reads no pages), and its
// buckets are prefill buckets. Per input set: q, r, k, v and dout made on the GPU like the
// prefill bench makes its inputs, then the forward (Runtime::Prefill, the runtime's choice)
// run once on them for what the backward reads: out, lse and, with a probe, tbar and vbar
// (tests/runtime/backward_gpu_test.cc does the same). A time is Runtime's backward only (its
// three launches, RunPrefillBackward) over the rotated sets, by CUDA-graph replay; dq, dr,
// dk, dv and the float32 workspace are shared by the sets, as the forward's out is.
//
// Verification, before a time counts: a reduced shape (batch <= 2, seqlen_q/k <= 512; the
// second sequence ragged through cu_seqlens when batch >= 2, then the first sequence through
// the padded path the timing uses), the forward on the GPU, then the backward's dq, dr, dk, dv
// each against ref::PrefillBackward (float64) within the backward's tolerance (2e-2 bf16,
// 5e-3 fp16: the GPU test's; the gradients carry the forward's rounding of out, vbar and lse
// on top of their own). Amplified inputs scale r by 0.02 there, as the GPU test does, so that
// delta stays away from the eps guard (docs/backward.md, "Conditioning"). With
// BenchOptions::reference_key the full shape is also compared with that variant's gradients.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "parallax/codegen/variant.h"
#include "parallax/runtime/runtime.h"
#include "parallax/search/bench.h"

namespace parallax::search {

struct BackwardShape {
  Problem problem;  // mode bwd, contiguous; problem.window == (window > 0)
  Algorithm algorithm;
  int batch = 1;
  int seqlen_q = 1024;  // queries per sequence, 1..seqlen_k
  int seqlen_k = 1024;  // keys per sequence
  int window = 0;       // sliding window W (0: none), as PrefillShape's
};

// The FLOPs a backward is credited with for "attention-equivalent" TFLOP/s: 2.5x the
// forward's PrefillFlops, FlashAttention's convention (five matrix products against the
// forward's two), the same for softmax and Parallax, as the forward's count is.
double BackwardFlops(const BackwardShape& s);

// Bytes of one input set: what the backward reads per set (q, k, v, out, dout, lse; with a
// probe also r, vbar and tbar).
double BackwardInputSetBytes(const BackwardShape& s);

class BackwardBench : public Bench {
 public:
  // Allocates and fills the input sets on rt's device and runs the forward on each, computes
  // the reduced-shape float64 reference (unless o.reduced_check is false) and, with
  // reference_key, the full-shape reference gradients.
  static absl::StatusOr<std::unique_ptr<BackwardBench>> Create(Runtime& rt, const BackwardShape& s,
                                                               const BenchOptions& o);

  double flops_per_launch() const;  // BackwardFlops(shape)

 private:
  BackwardBench(const BackwardShape& s, std::unique_ptr<internal::BenchHarness> h);
  BackwardShape shape_;
};

}  // namespace parallax::search
