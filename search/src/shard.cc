#include "parallax/search/shard.h"

#include <algorithm>
#include <cstdint>
#include <numeric>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "parallax/search/bench.h"
#include "parallax/search/cost_model.h"
#include "parallax/search/strategy.h"

namespace parallax::search {

std::string ToString(const ShardSpec& s) { return absl::StrCat(s.index, "/", s.count); }

absl::StatusOr<ShardSpec> ParseShard(absl::string_view text) {
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("--shard '", text, "': ", why,
                                                   " (wants I/N, 1-based: 2/4 is the second of 4 shards)"));
  };
  const std::vector<absl::string_view> parts = absl::StrSplit(text, '/');
  if (parts.size() != 2) return bad("not I/N");
  int v[2] = {0, 0};
  for (int i = 0; i < 2; ++i) {
    const absl::string_view p = parts[i];
    if (p.empty() || p.size() > 9 || !std::all_of(p.begin(), p.end(), [](char c) { return absl::ascii_isdigit(c); }))
      return bad("not I/N");
    if (!absl::SimpleAtoi(p, &v[i])) return bad("not I/N");
  }
  if (v[1] < 1) return bad("N must be at least 1");
  if (v[1] > kMaxShards) return bad(absl::StrCat("N must be at most ", kMaxShards));
  if (v[0] < 1 || v[0] > v[1]) return bad("I must be between 1 and N");
  return ShardSpec{v[0], v[1]};
}

double ExpectedUnitSeconds(const TuneRequest& req, const ShapeBucket& b, int candidates) {
  constexpr double kRoundTripS = 0.05;  // the tuner's watchdog floor per measurement
  const BenchOptions bo;
  const int reps = RepsPlan{}.full;
  double est_us = 0;
  if (absl::StatusOr<Variant> def = Variant::Parse(DefaultVariantKey(req.problem, req.algorithm)); def.ok())
    est_us = EstimateUs(*def, b, CostInputs{});
  const double us = 3 * est_us + bo.warmup * est_us + (reps + 2) * std::max(bo.min_sample_us, est_us);
  return std::max(1, candidates) * (kRoundTripS + us * 1e-6);
}

std::vector<size_t> LongestFirst(const TuneRequest& req) {
  std::vector<double> cost(req.buckets.size());
  for (size_t i = 0; i < cost.size(); ++i) cost[i] = ExpectedUnitSeconds(req, req.buckets[i], 1);
  std::vector<size_t> order(cost.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return cost[a] > cost[b]; });
  return order;
}

ShardPlan PlanShards(const TuneRequest& req, const TuneSpaceOptions& space, int count) {
  ShardPlan plan;
  plan.count = std::max(1, count);
  plan.load_s.assign(plan.count, 0.0);
  const int candidates = static_cast<int>(
      BuildStaticSpace(req.problem, req.algorithm, CostInputs{}.limits, space).variants.size());
  for (size_t i = 0; i < req.buckets.size(); ++i) {
    WorkUnit u;
    u.order = static_cast<int>(i);
    u.bucket = req.buckets[i];
    u.key = ToString(u.bucket);
    u.candidates = candidates;
    u.cost_s = ExpectedUnitSeconds(req, u.bucket, candidates);
    plan.units.push_back(u);
  }
  std::vector<size_t> by_cost(plan.units.size());
  std::iota(by_cost.begin(), by_cost.end(), size_t{0});
  std::sort(by_cost.begin(), by_cost.end(), [&](size_t a, size_t b) {
    const WorkUnit &x = plan.units[a], &y = plan.units[b];
    if (x.cost_s != y.cost_s) return x.cost_s > y.cost_s;
    if (x.key != y.key) return x.key < y.key;
    return x.order < y.order;
  });
  for (size_t i : by_cost) {
    // min_element: the first of equal loads, i.e. the lowest shard index.
    const size_t s = std::min_element(plan.load_s.begin(), plan.load_s.end()) - plan.load_s.begin();
    plan.units[i].shard = static_cast<int>(s) + 1;
    plan.load_s[s] += plan.units[i].cost_s;
  }
  return plan;
}

TuneRequest ShardRequest(const TuneRequest& req, const ShardPlan& plan, int index) {
  TuneRequest out = req;
  out.buckets.clear();
  for (const WorkUnit& u : plan.units)
    if (u.shard == index) out.buckets.push_back(u.bucket);
  return out;
}

}  // namespace parallax::search
