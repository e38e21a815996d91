// Guided search: the cost model picks a small first round (plus the warm-start seeds and a
// few random explorers in case the model is wrong about a whole region), hill-climbing
// explores one-field neighbours of the leaders, then successive halving re-times the top
// third with more samples and the top few, plus the baseline (the runtime's default), with
// full samples. Under a limited budget the
// exploring stops at 70% of it, so the racing rounds still happen.
//
// With warm-start seeds (configs tuned for a neighbour bucket or another GPU model) half of
// the hill-climbing happens right after the seeds, before the model's picks: the best
// config elsewhere is usually one field away from the best one here (a split count, the
// fused merge, a pipeline depth), so its neighbourhood is where a short budget pays most.
// The plan (PlannedMeasurements) is the same either way; a first-round pick the early climb
// already measured is replaced by the next cheapest, never measured twice.
#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "strategy_internal.h"

namespace parallax::search::internal {
namespace {

constexpr size_t kLeaders = 3;  // whose neighbours the local search visits
// Under a limited budget exploration stops at this share of it, so the leaders still get
// raced with more samples instead of being judged on a few.
constexpr double kExploreShare = 0.7;

bool ExplorationOver(const Budget& b) {
  return !b.unlimited() && b.Elapsed() >= kExploreShare * (b.Elapsed() + b.Remaining());
}

std::vector<size_t> CostOrder(const std::vector<Candidate>& c, const std::vector<std::string>& seeds) {
  std::vector<size_t> order;
  std::set<size_t> taken;
  for (const std::string& s : seeds)
    for (size_t i = 0; i < c.size(); ++i)
      if (c[i].variant.Key() == s && taken.insert(i).second) order.push_back(i);
  std::vector<size_t> rest;
  for (size_t i = 0; i < c.size(); ++i)
    if (!taken.count(i)) rest.push_back(i);
  std::stable_sort(rest.begin(), rest.end(), [&](size_t a, size_t b) { return c[a].est_us < c[b].est_us; });
  order.insert(order.end(), rest.begin(), rest.end());
  return order;
}

}  // namespace

StrategyResult RunGuided(const std::vector<Candidate>& c, Measurer& m, const Budget& b, const StrategyOptions& o) {
  StrategyResult r;
  Session s(m, b, r);
  if (c.empty()) return r;
  std::map<std::string, size_t> index;
  for (size_t i = 0; i < c.size(); ++i) index[c[i].variant.Key()] = i;

  // Local search: the cheapest untried neighbour of the current leaders, one at a time, so a
  // neighbour that takes the lead gets its own neighbourhood explored next. False once the
  // session stopped (budget, cancel).
  const size_t pool = std::min(c.size(), std::max<size_t>(o.guided_min_pool,
                                                          std::ceil(o.guided_fraction * c.size())));
  const size_t climb = std::max<size_t>(2, pool / 4);
  size_t climbed = 0;
  auto climb_to = [&](size_t upto) {
    for (; climbed < upto && !ExplorationOver(b); ++climbed) {
      const std::vector<std::string> ranked = s.RankedOk();
      std::vector<size_t> next;
      for (size_t l = 0; l < std::min(kLeaders, ranked.size()); ++l)
        for (size_t n : Neighbours(c, index.at(ranked[l])))
          if (!s.Tried(c[n].variant.Key())) next.push_back(n);
      if (next.empty()) break;
      const size_t pick = *std::min_element(next.begin(), next.end(),
                                            [&](size_t x, size_t y) { return c[x].est_us < c[y].est_us; });
      if (!s.Measure(c[pick], o.reps.few)) return false;
    }
    return true;
  };

  // Round 1: seeds, the cheapest by the model, and a few random explorers, few samples each.
  const std::vector<size_t> order = CostOrder(c, o.seeds);
  size_t seeds = 0;  // the seeds that are candidates lead `order`
  bool warm = false;  // a seed besides the baseline
  for (const std::string& k : o.seeds)
    if (index.count(k)) warm = warm || k != o.baseline;
  for (size_t i = 0; i < order.size() && std::find(o.seeds.begin(), o.seeds.end(), c[order[i]].variant.Key()) !=
                                              o.seeds.end(); ++i)
    ++seeds;
  std::vector<size_t> first(order.begin(), order.begin() + pool);
  std::vector<size_t> rest(order.begin() + pool, order.end());
  SeededShuffle(rest, o.seed);
  const size_t explorers = std::min(rest.size(), std::max<size_t>(1, pool / 8));
  first.insert(first.end(), rest.begin(), rest.begin() + explorers);
  const std::set<size_t> in_first(first.begin(), first.end());
  size_t spare = pool;  // into `order`: replacements for picks the early climb already measured
  for (size_t i = 0; i < first.size(); ++i) {
    if (ExplorationOver(b)) break;
    size_t pick = first[i];
    if (s.Tried(c[pick].variant.Key())) {  // measured by the early climb: the next cheapest instead
      while (spare < order.size() && (in_first.count(order[spare]) || s.Tried(c[order[spare]].variant.Key()))) ++spare;
      if (spare == order.size()) continue;
      pick = order[spare++];
    }
    if (!s.Measure(c[pick], o.reps.few)) return r;
    if (warm && i + 1 == std::min(seeds, first.size()) && !climb_to(climb / 2)) return r;
  }
  if (!climb_to(climb)) return r;

  // Successive halving: top third with more samples, then the finalists with full samples.
  std::vector<std::string> ranked = s.RankedOk();
  const size_t third = std::max<size_t>(o.finalists, (ranked.size() + 2) / 3);
  ranked.resize(std::min(ranked.size(), third));
  for (const std::string& k : ranked)
    if (!s.Measure(c[index.at(k)], o.reps.mid)) return r;
  std::vector<std::string> finalists;
  for (const std::string& k : s.RankedOk())
    if (std::find(ranked.begin(), ranked.end(), k) != ranked.end() && finalists.size() < size_t(o.finalists))
      finalists.push_back(k);
  const std::vector<std::string> ok = s.RankedOk();
  if (index.count(o.baseline) && std::find(ok.begin(), ok.end(), o.baseline) != ok.end() &&
      std::find(finalists.begin(), finalists.end(), o.baseline) == finalists.end())
    finalists.push_back(o.baseline);
  for (const std::string& k : finalists)
    if (!s.Measure(c[index.at(k)], o.reps.full)) return r;
  return r;
}

}  // namespace parallax::search::internal
