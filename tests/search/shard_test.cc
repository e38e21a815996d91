// `parallax tune --shard I/N` (search/shard.h): the plan partitions the unsharded run's
// buckets and balances their expected costs; sharded tunes with the fake GPU and worker,
// merged with the CLI's `db import`, give the same best configs as one unsharded run; an
// interrupted shard resumes with nothing lost. (The CLI's flag checks and --dry-run:
// cli_test.cc, CliTest.TuneShard*.)
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "fake_gpu.h"
#include "fake_times.h"
#include "parallax/cache/store.h"
#include "parallax/search/shard.h"
#include "parallax/search/tune_args.h"
#include "parallax/search/tuner.h"

namespace parallax::search {
namespace {

std::vector<std::string> Keys(const std::vector<ShapeBucket>& bs) {
  std::vector<std::string> out;
  for (const ShapeBucket& b : bs) out.push_back(ToString(b));
  return out;
}

TEST(ShardPlan, ParseAcceptsOneBasedIOverNOnly) {
  for (auto [text, i, n] : std::vector<std::tuple<std::string, int, int>>{
           {"1/1", 1, 1}, {"2/4", 2, 4}, {"4/4", 4, 4}, {"1/4096", 1, 4096}, {"07/10", 7, 10}}) {
    absl::StatusOr<ShardSpec> s = ParseShard(text);
    ASSERT_TRUE(s.ok()) << text << ": " << s.status();
    EXPECT_EQ(s->index, i) << text;
    EXPECT_EQ(s->count, n) << text;
  }
  EXPECT_EQ(ToString(ShardSpec{2, 4}), "2/4");
  for (const char* bad : {"", "0/4", "5/4", "1/0", "0/0", "2", "/4", "1/", "1/4/5", "a/b", "-1/4", "+1/4", " 1/4",
                          "1/4 ", "1.5/4", "1/4097", "99999999999/99999999999", "1:4"}) {
    absl::StatusOr<ShardSpec> s = ParseShard(bad);
    EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(s.status().message().find("--shard"), std::string::npos) << s.status();
  }
}

// For N in 1..4 (and more shards than buckets) over decode and prefill grids: each unit in
// exactly one shard, the shards' buckets in the unsharded order, the union the unsharded run,
// loads within mean + largest unit (greedy on a least-loaded shard: the shard that ends up
// heaviest was the lightest, so at most the mean, before its last unit), and the same plan
// on every call.
TEST(ShardPlan, ShardsPartitionTheRunAndAreBalanced) {
  std::vector<TuneRequest> reqs;
  TuneArgs a;
  a.preset = "llama3-8b";
  reqs.push_back(*MakeTuneRequest(a));  // 16 decode buckets
  a.mode = "prefill";
  a.batch = {1, 4};
  a.seqlen = {4096, 16384};
  a.q_len = {512, 2048, 4096};
  reqs.push_back(*MakeTuneRequest(a));
  a = TuneArgs{};
  a.preset = "qwen3-0.6b";
  a.batch = {1, 8};
  a.seqlen = {1024};
  reqs.push_back(*MakeTuneRequest(a));  // 2 buckets: shards 3 and 4 get none
  const TuneSpaceOptions space;
  for (const TuneRequest& req : reqs) {
    const std::vector<std::string> all = Keys(req.buckets);
    for (int n = 1; n <= 5; ++n) {
      SCOPED_TRACE(absl::StrCat(all.size(), " buckets over ", n));
      const ShardPlan plan = PlanShards(req, space, n);
      ASSERT_EQ(plan.units.size(), all.size());
      ASSERT_EQ(plan.load_s.size(), static_cast<size_t>(n));
      double total = 0, largest = 0;
      std::vector<double> load(n, 0.0);
      for (size_t i = 0; i < plan.units.size(); ++i) {
        const WorkUnit& u = plan.units[i];
        EXPECT_EQ(u.order, static_cast<int>(i));
        EXPECT_EQ(u.key, all[i]);
        EXPECT_GT(u.candidates, 0);
        EXPECT_GT(u.cost_s, 0);
        ASSERT_GE(u.shard, 1);
        ASSERT_LE(u.shard, n);
        load[u.shard - 1] += u.cost_s;
        total += u.cost_s;
        largest = std::max(largest, u.cost_s);
      }
      std::multiset<std::string> seen;
      for (int s = 1; s <= n; ++s) {
        const std::vector<std::string> mine = Keys(ShardRequest(req, plan, s).buckets);
        // In the unsharded order: a subsequence of it.
        size_t at = 0;
        for (const std::string& k : mine) {
          while (at < all.size() && all[at] != k) ++at;
          EXPECT_LT(at, all.size()) << k << " out of order in shard " << s;
        }
        seen.insert(mine.begin(), mine.end());
        EXPECT_NEAR(plan.load_s[s - 1], load[s - 1], 1e-9 * total);
        EXPECT_LE(load[s - 1], total / n + largest + 1e-9 * total) << "shard " << s;
      }
      EXPECT_EQ(seen, std::multiset<std::string>(all.begin(), all.end()));  // each exactly once
      const ShardPlan again = PlanShards(req, space, n);
      for (size_t i = 0; i < plan.units.size(); ++i) EXPECT_EQ(again.units[i].shard, plan.units[i].shard);
      if (n == 1) {
        EXPECT_EQ(Keys(ShardRequest(req, plan, 1).buckets), all);
      }
    }
  }
  // The cost grows with the bucket's work: the largest decode bucket costs the most.
  const ShardPlan p = PlanShards(reqs[0], space, 4);
  const auto top = std::max_element(p.units.begin(), p.units.end(),
                                    [](const WorkUnit& x, const WorkUnit& y) { return x.cost_s < y.cost_s; });
  EXPECT_EQ(top->key, "b128-l65536");
  EXPECT_EQ(top->shard, 1);  // the first placed, on the lowest index
}

// ---- sharded tunes with the fake GPU and worker ----

int Sh(const std::string& cmd) {
  const int st = std::system(cmd.c_str());
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

class ShardTune : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::string(PLX_BINARY_DIR) + "/search_shard_test_" + std::to_string(::getpid()) + "_" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    log_ = dir_ + "/worker.log";
    ::setenv("FAKE_LOG", log_.c_str(), 1);
  }
  void TearDown() override {
    ::unsetenv("FAKE_LOG");
    if (!HasFailure()) std::filesystem::remove_all(dir_);
  }
  static TuneRequest Request() {
    TuneRequest r;
    r.problem.num_q_heads = 16;
    r.problem.num_kv_heads = 8;
    r.buckets = {BucketFor(1, 1024), BucketFor(1, 65536), BucketFor(8, 4096),
                 BucketFor(32, 16384), BucketFor(128, 1024), BucketFor(128, 65536)};
    return r;
  }
  TuneOptions Options(const std::string& db) {
    TuneOptions o;
    o.db_path = dir_ + "/" + db;
    o.cache_dir = dir_ + "/kernels";
    o.space = {{0}, false, {MathPath::kMma}};
    o.strategy.kind = StrategyKind::kExhaustive;  // the winner depends on nothing but the times
    o.strategy.reps = {1, 2, 3};
    o.worker_argv = {PLX_FAKE_WORKER};
    o.min_timeout_s = 1;
    o.compile_threads = 2;
    return o;
  }
  static TuneDeps Deps() {
    TuneDeps d;
    d.devices = {parallax::testing::FakeH100(0, "FakeGPU")};
    d.make_compile = [](const CompileTarget&) {
      return CompileFn([](const std::vector<Variant>& members) {
        CompileOutcome c;
        c.kind = CompileOutcome::Kind::kKeep;
        if (members.front().schedule().block_n == 64 && members.front().schedule().stages == 2) {
          c.kind = CompileOutcome::Kind::kPruned;
          c.reason = "plx_decode spills";
        }
        return c;
      });
    };
    return d;
  }
  // (problem, bucket) -> (variant, median) of every best config in a database.
  static std::map<std::string, std::pair<std::string, double>> Best(const std::string& path) {
    std::map<std::string, std::pair<std::string, double>> out;
    std::unique_ptr<cache::Store> s = *cache::Store::Open(path);
    const absl::StatusOr<std::vector<cache::BestConfig>> all = s->ListBestConfigs();
    EXPECT_TRUE(all.ok()) << all.status();
    if (!all.ok()) return out;
    for (const cache::BestConfig& b : *all)
      out[b.device_fingerprint + " " + b.problem_key + " " + b.bucket] = {b.variant_key, b.median_us};
    return out;
  }
  // "bucket key" of every measurement in a database.
  static std::multiset<std::string> MeasurementKeys(const std::string& path) {
    std::multiset<std::string> out;
    std::unique_ptr<cache::Store> s = *cache::Store::Open(path);
    const absl::StatusOr<std::vector<cache::Measurement>> all = s->ListMeasurements();
    EXPECT_TRUE(all.ok()) << all.status();
    if (!all.ok()) return out;
    for (const cache::Measurement& m : *all) out.insert(m.bucket + " " + m.variant_key);
    return out;
  }
  std::string dir_, log_;
};

// Unsharded into A; 4 shards into their own databases, `db import`ed into B: the same best
// config, variant and time, for every (problem, bucket).
TEST_F(ShardTune, FourShardsMergedGiveTheUnshardedBestConfigs) {
  const TuneRequest req = Request();
  const TuneOptions a = Options("a.db");
  absl::StatusOr<TuneReport> whole = Tune(req, a, Deps());
  ASSERT_TRUE(whole.ok()) << whole.status();
  ASSERT_EQ(whole->units.size(), req.buckets.size());

  const ShardPlan plan = PlanShards(req, a.space, 4);
  const std::string b = dir_ + "/b.db";
  std::set<std::string> tuned;
  for (int s = 1; s <= 4; ++s) {
    const TuneRequest part = ShardRequest(req, plan, s);
    ASSERT_FALSE(part.buckets.empty()) << "shard " << s;  // 6 buckets over 4 shards
    TuneOptions o = Options("shard" + std::to_string(s) + ".db");
    o.command = {{"shard", ToString(ShardSpec{s, 4})}};
    absl::StatusOr<TuneReport> r = Tune(part, o, Deps());
    ASSERT_TRUE(r.ok()) << r.status();
    for (const UnitReport& u : r->units) {
      EXPECT_TRUE(tuned.insert(u.bucket).second) << u.bucket << " tuned twice";
      EXPECT_FALSE(u.best_key.empty()) << u.bucket;
    }
    std::unique_ptr<cache::Store> st = *cache::Store::Open(o.db_path);
    const std::vector<cache::RunInfo> runs = *st->ListRuns();
    ASSERT_EQ(runs.size(), 1u);
    EXPECT_EQ(runs[0].params["shard"], ToString(ShardSpec{s, 4}));
    EXPECT_EQ(runs[0].params["buckets"].get<std::vector<std::string>>(), Keys(part.buckets));
    EXPECT_EQ(Sh(std::string(PLX_SEARCH_CLI) + " db import " + o.db_path + " --db " + b + " >/dev/null 2>&1"), 0);
  }
  EXPECT_EQ(tuned.size(), req.buckets.size());
  const auto want = Best(a.db_path), got = Best(b);
  EXPECT_EQ(want.size(), req.buckets.size());
  EXPECT_EQ(got, want);
  for (const auto& [unit, best] : want) EXPECT_DOUBLE_EQ(best.second, testing::FakeTimeUs(best.first)) << unit;
  // The merged database holds every measurement the unsharded run made, once.
  EXPECT_EQ(MeasurementKeys(b), MeasurementKeys(a.db_path));
}

// A shard stopped part way (Ctrl-C: the cancel flag) and run again finishes with nothing lost
// or measured twice, and ends where an uninterrupted run of the shard ends.
TEST_F(ShardTune, InterruptedShardResumes) {
  const TuneRequest req = Request();
  const TuneOptions base = Options("x.db");
  const TuneRequest part = ShardRequest(req, PlanShards(req, base.space, 2), 2);
  ASSERT_GE(part.buckets.size(), 2u);

  TuneOptions o = Options("shard2.db");
  std::atomic<bool> cancel{false};
  o.cancel = &cancel;
  int measured = 0;
  o.progress = [&](const ProgressEvent& e) {
    if (e.kind == ProgressEvent::Kind::kMeasured && !e.outcome.cached && e.outcome.verdict != Verdict::kPruned &&
        ++measured == 40)
      cancel = true;
  };
  absl::StatusOr<TuneReport> first = Tune(part, o, Deps());
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_TRUE(first->cancelled);
  const std::multiset<std::string> before = MeasurementKeys(o.db_path);
  EXPECT_GE(before.size(), 40u);

  cancel = false;
  o.progress = nullptr;
  absl::StatusOr<TuneReport> second = Tune(part, o, Deps());
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_FALSE(second->cancelled);
  ASSERT_EQ(second->units.size(), part.buckets.size());
  for (const UnitReport& u : second->units) {
    EXPECT_FALSE(u.best_key.empty()) << u.bucket;
    EXPECT_EQ(u.measured + u.cached + u.pruned, u.candidates) << u.bucket;
  }
  const std::multiset<std::string> after = MeasurementKeys(o.db_path);
  for (const std::string& k : before) EXPECT_EQ(after.count(k), 1u) << k;  // kept, not measured again

  const TuneOptions clean = Options("clean.db");
  ASSERT_TRUE(Tune(part, clean, Deps()).ok());
  EXPECT_EQ(after, MeasurementKeys(clean.db_path));
  EXPECT_EQ(Best(o.db_path), Best(clean.db_path));
}

}  // namespace
}  // namespace parallax::search
