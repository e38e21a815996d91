#include "parallax/search/strategy.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "absl/strings/str_cat.h"
#include "strategy_internal.h"

namespace parallax::search {
namespace internal {

bool Session::Measure(const Candidate& c, int reps) {
  if (budget_.Cancelled()) {
    r_.cancelled = true;
    return false;
  }
  if (budget_.Exhausted()) {
    r_.budget_exhausted = true;
    return false;
  }
  Outcome o = m_.Measure(c.variant, reps);
  if (o.verdict == Verdict::kCancelled) {
    r_.cancelled = true;
    return false;
  }
  const std::string& key = c.variant.Key();
  auto it = latest_.find(key);
  if (it == latest_.end()) {
    if (o.verdict != Verdict::kPruned) ++r_.distinct_measured;
    latest_.emplace(key, o);
  } else if (o.reps >= it->second.reps) {
    it->second = o;
  }
  r_.trials.push_back({key, std::move(o)});
  return true;
}

std::vector<std::string> Session::RankedOk() const {
  std::vector<std::pair<double, std::string>> ok;
  for (const auto& [key, o] : latest_)
    if (o.ok()) ok.emplace_back(o.median_us, key);
  std::sort(ok.begin(), ok.end());
  std::vector<std::string> out;
  for (auto& [t, k] : ok) out.push_back(std::move(k));
  return out;
}

void SeededShuffle(std::vector<size_t>& v, uint64_t seed) {
  std::mt19937_64 rng(seed);
  for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[rng() % i]);
}

}  // namespace internal

namespace {

using internal::Session;

// Seeds that are candidates, in the order given, without repeats.
std::vector<size_t> SeedIndices(const std::vector<Candidate>& c, const std::vector<std::string>& seeds) {
  std::vector<size_t> out;
  for (const std::string& s : seeds)
    for (size_t i = 0; i < c.size(); ++i)
      if (c[i].variant.Key() == s && std::find(out.begin(), out.end(), i) == out.end()) out.push_back(i);
  return out;
}

StrategyResult RunExhaustive(const std::vector<Candidate>& c, Measurer& m, const Budget& b, const StrategyOptions& o) {
  StrategyResult r;
  Session s(m, b, r);
  for (const Candidate& cand : c)
    if (!s.Measure(cand, o.reps.full)) break;
  return r;
}

StrategyResult RunRandom(const std::vector<Candidate>& c, Measurer& m, const Budget& b, const StrategyOptions& o) {
  StrategyResult r;
  Session s(m, b, r);
  std::vector<size_t> order(c.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  internal::SeededShuffle(order, o.seed);
  const size_t want = std::min(c.size(), std::max<size_t>(1, std::ceil(o.random_fraction * c.size())));
  std::vector<size_t> pick = SeedIndices(c, o.seeds);
  for (size_t i : order) {
    if (pick.size() >= want) break;
    if (std::find(pick.begin(), pick.end(), i) == pick.end()) pick.push_back(i);
  }
  for (size_t i : pick)
    if (!s.Measure(c[i], o.reps.full)) break;
  return r;
}

}  // namespace

const char* ToString(StrategyKind k) {
  switch (k) {
    case StrategyKind::kGuided: return "guided";
    case StrategyKind::kExhaustive: return "exhaustive";
    case StrategyKind::kRandom: return "random";
  }
  return "?";
}

absl::StatusOr<StrategyKind> ParseStrategy(absl::string_view name) {
  for (StrategyKind k : {StrategyKind::kGuided, StrategyKind::kExhaustive, StrategyKind::kRandom})
    if (name == ToString(k)) return k;
  return absl::InvalidArgumentError(
      absl::StrCat("strategy '", name, "': expected guided, exhaustive or random"));
}

StrategyResult RunStrategy(const std::vector<Candidate>& candidates, Measurer& m, const Budget& budget,
                           const StrategyOptions& o) {
  StrategyResult r;
  switch (o.kind) {
    case StrategyKind::kExhaustive: r = RunExhaustive(candidates, m, budget, o); break;
    case StrategyKind::kRandom: r = RunRandom(candidates, m, budget, o); break;
    case StrategyKind::kGuided: r = internal::RunGuided(candidates, m, budget, o); break;
  }
  r.best = PickBest(r.trials);
  return r;
}

int PlannedMeasurements(const StrategyOptions& o, size_t n) {
  if (n == 0) return 0;
  const size_t seeds = o.seeds.size();
  switch (o.kind) {
    case StrategyKind::kExhaustive: return static_cast<int>(n);
    case StrategyKind::kRandom:
      return static_cast<int>(std::min(n, std::max<size_t>(1, std::ceil(o.random_fraction * n)) + seeds));
    case StrategyKind::kGuided: {  // mirrors RunGuided's round sizes
      const size_t pool = std::min(n, std::max<size_t>(o.guided_min_pool, std::ceil(o.guided_fraction * n)));
      const size_t first = std::min(n, pool + std::max<size_t>(1, pool / 8) + std::max<size_t>(2, pool / 4));
      const size_t third = std::max<size_t>(o.finalists, (first + 2) / 3);
      return static_cast<int>(first + third + o.finalists + (o.baseline.empty() ? 0 : 1));
    }
  }
  return static_cast<int>(n);
}

std::optional<Trial> PickBest(const std::vector<Trial>& trials) {
  std::map<std::string, const Outcome*> judged;
  for (const Trial& t : trials) {
    const Outcome*& j = judged[t.key];
    if (j == nullptr || t.outcome.reps >= j->reps) j = &t.outcome;
  }
  int level = -1;
  for (const auto& [key, o] : judged)
    if (o->ok()) level = std::max(level, o->reps);
  std::optional<Trial> best;
  for (const auto& [key, o] : judged) {
    if (!o->ok() || o->reps != level) continue;
    if (!best || o->median_us < best->outcome.median_us) best = Trial{key, *o};
  }
  return best;
}

std::vector<size_t> Neighbours(const std::vector<Candidate>& candidates, size_t of) {
  const Schedule& a = candidates[of].variant.schedule();
  std::vector<size_t> out;
  for (size_t i = 0; i < candidates.size(); ++i) {
    const Schedule& b = candidates[i].variant.schedule();
    const int diff = (a.path != b.path) + (a.block_n != b.block_n) + (a.warps != b.warps) +
                     (a.stages != b.stages) + (a.splits != b.splits) + (a.heads_per_cta != b.heads_per_cta) +
                     (a.block_m != b.block_m) + (a.fused_merge != b.fused_merge);
    if (diff == 1 && a.test_fault == b.test_fault) out.push_back(i);
  }
  return out;
}

}  // namespace parallax::search
