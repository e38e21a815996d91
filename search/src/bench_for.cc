#include "bench_for.h"

#include "parallax/search/backward_bench.h"
#include "parallax/search/decode_bench.h"
#include "parallax/search/prefill_bench.h"

namespace parallax::search::internal {
namespace {

PrefillShape PrefillShapeOf(const Problem& p, const Algorithm& a, const BucketShape& s) {
  return PrefillShape{p, a, s.batch, s.q_len, s.seqlen, BenchWindow(p, s.seqlen)};
}

// A backward is measured at a prefill bucket's shape, like the forward it differentiates.
BackwardShape BackwardShapeOf(const Problem& p, const Algorithm& a, const BucketShape& s) {
  return BackwardShape{p, a, s.batch, s.q_len, s.seqlen, BenchWindow(p, s.seqlen)};
}

}  // namespace

absl::StatusOr<std::unique_ptr<Bench>> MakeBench(Runtime& rt, const Problem& p, const Algorithm& a,
                                                 const BucketShape& s, const BenchOptions& o) {
  if (p.mode == Mode::kPrefill) {
    absl::StatusOr<std::unique_ptr<PrefillBench>> b = PrefillBench::Create(rt, PrefillShapeOf(p, a, s), o);
    if (!b.ok()) return b.status();
    return std::unique_ptr<Bench>(*std::move(b));
  }
  if (p.mode == Mode::kBackward) {
    absl::StatusOr<std::unique_ptr<BackwardBench>> b = BackwardBench::Create(rt, BackwardShapeOf(p, a, s), o);
    if (!b.ok()) return b.status();
    return std::unique_ptr<Bench>(*std::move(b));
  }
  absl::StatusOr<std::unique_ptr<DecodeBench>> b = DecodeBench::Create(rt, BenchShape{p, a, s.batch, s.seqlen}, o);
  if (!b.ok()) return b.status();
  return std::unique_ptr<Bench>(*std::move(b));
}

double BenchSetBytes(const Problem& p, const Algorithm& a, const BucketShape& s) {
  if (p.mode == Mode::kPrefill) return PrefillInputSetBytes(PrefillShapeOf(p, a, s));
  if (p.mode == Mode::kBackward) return BackwardInputSetBytes(BackwardShapeOf(p, a, s));
  return InputSetBytes(BenchShape{p, a, s.batch, s.seqlen});
}

}  // namespace parallax::search::internal
