#include "parallax/search/bench.h"

#include <algorithm>
#include <cmath>

#include "bench_harness.h"

namespace parallax::search {

int InputSetsFor(double set_bytes, double l2_bytes, double mem_bytes, const BenchOptions& o) {
  const int want = std::clamp(static_cast<int>(std::ceil(o.l2_factor * l2_bytes / set_bytes)), 1, o.max_sets);
  const int fit = static_cast<int>(std::floor(o.mem_fraction * mem_bytes / set_bytes));
  return std::min(want, fit);
}

int BenchWindow(const Problem& p, int seqlen_k) { return p.window ? std::max(1, seqlen_k / 2) : 0; }

Bench::Bench(std::unique_ptr<internal::BenchHarness> h) : h_(std::move(h)) {}
Bench::~Bench() = default;

absl::StatusOr<VerifyResult> Bench::Verify(const Variant& v) { return h_->Verify(v); }

absl::StatusOr<Timing> Bench::Time(const std::string& key, int reps) {
  return h_->Time(internal::Pick{nullptr, key}, reps);
}

absl::StatusOr<Timing> Bench::Time(const Variant& v, int reps) { return h_->Time(internal::Pick{&v, ""}, reps); }

int Bench::num_sets() const { return h_->num_sets(); }

nlohmann::json Bench::Info() const { return h_->Info(); }

}  // namespace parallax::search
