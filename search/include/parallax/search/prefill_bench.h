// Timing and checking prefill candidates on the GPU in this process (`parallax bench prefill`).
// Sets, checks and timing are the harness every family shares (search/src/bench_harness.h);
// this bench supplies prefill's inputs and launch.
//
// A prefill here is B sequences of seqlen_q queries against seqlen_k keys each, causal with
// the mask aligned at the end of the keys (seqlen_q == seqlen_k: the usual triangle; fewer
// queries: a chunk of a longer prefill), optionally with a sliding window. Q, R, K and V are
// contiguous [B, L, H, D], or (problem paged) K and V are pages [pages, page_size, Hkv, D]
// shuffled over the pool with a block table and seqused_k: extend over an engine's cache.
//
// Inputs are made on the GPU like DecodeBench makes them (q, r, k RMS-normalised, v normal)
// and rotated over input sets the same way (InputSetsFor), so that L2 does not flatter. A time
// is the median over `reps` samples of CUDA-graph replays, per launch.
// Verification, before a time counts: a reduced shape (batch <= 2, seqlen_q/k <= 512, the
// second sequence ragged through cu_seqlens when batch >= 2; and the first sequence again
// through the uniform-length path the timing uses) against the float64 reference within the
// spec's tolerance. Amplified rows with |delta| < 0.05 are left out of the error, as in the
// runtime's GPU tests (they amplify fp32 rounding beyond any fixed bound). With
// BenchOptions::reference_key, the full shape is also compared with that variant's output,
// as DecodeBench does (nothing here sets it by default).
#pragma once

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "parallax/codegen/variant.h"
#include "parallax/runtime/runtime.h"
#include "parallax/search/bench.h"  // Bench, BenchOptions, VerifyResult, Timing, InputSetsFor

namespace parallax::search {

struct PrefillShape {
  Problem problem;  // mode prefill, contiguous or paged; problem.window == (window > 0)
  Algorithm algorithm;
  int batch = 1;
  int seqlen_q = 1024;  // queries per sequence, 1..seqlen_k
  int seqlen_k = 1024;  // keys per sequence
  int window = 0;       // sliding window W (0: none): row i also needs key j > Lk - Lq + i - W
};

// (query, key) pairs one sequence leaves visible: row i of seqlen_q sees keys
// max(0, Lk - Lq + i - W + 1) .. Lk - Lq + i (no lower bound but 0 when window == 0).
int64_t VisiblePairs(int64_t seqlen_q, int64_t seqlen_k, int64_t window);

// The FLOPs a prefill is credited with, to report "attention-equivalent" TFLOP/s: 4 * D per
// visible (query, key) pair per query head (QK^T and PV, a multiply-add each = 2 FLOPs per
// element of D), counted exactly over the causal-at-the-end mask and the window, nothing for
// masked pairs a kernel may still compute. The same count for softmax and Parallax: Parallax
// (probe learned) does about twice the arithmetic (r.K^T and the second PV accumulation,
// 8 * D per pair in the spec), so its hardware FLOP rate is about twice the number reported;
// the number compares the time of the same attention shape across algorithms.
double PrefillFlops(int batch, int num_q_heads, int head_dim, int seqlen_q, int seqlen_k, int window);
double PrefillFlops(const PrefillShape& s);

// Bytes of one input set: q, k, v and (probe learned) r.
double PrefillInputSetBytes(const PrefillShape& s);

class PrefillBench : public Bench {
 public:
  // Allocates and fills the input sets on rt's device, computes the reduced-shape float64
  // reference (unless o.reduced_check is false) and, with reference_key, the full-shape
  // reference output.
  static absl::StatusOr<std::unique_ptr<PrefillBench>> Create(Runtime& rt, const PrefillShape& s,
                                                              const BenchOptions& o);

  double flops_per_launch() const;  // PrefillFlops(shape)

 private:
  PrefillBench(const PrefillShape& s, std::unique_ptr<internal::BenchHarness> h);
  PrefillShape shape_;
};

}  // namespace parallax::search
