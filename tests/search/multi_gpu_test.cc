// One host's GPUs tuning together (issue #17 part 1), without a GPU: fake devices, a fake
// compiler that takes a little time per class, and the fake worker taking a fixed time per
// measurement (longer for bigger buckets). Two GPUs must take about half the wall time of one
// on the same request, pick the same winners, and not end on one GPU finishing the biggest
// bucket alone; the compile queue must serve units tuned side by side in turn.
#include <gtest/gtest.h>

#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "fake_gpu.h"
#include "parallax/cache/store.h"
#include "parallax/search/compile.h"
#include "parallax/search/pruning.h"
#include "parallax/search/shard.h"
#include "parallax/search/tuner.h"

namespace parallax::search {
namespace {

TuneRequest Qwen(std::vector<ShapeBucket> buckets) {
  TuneRequest r;
  r.problem.num_q_heads = 16;
  r.problem.num_kv_heads = 8;
  r.buckets = std::move(buckets);
  return r;
}

class MultiGpu : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::string(PLX_BINARY_DIR) + "/search_multi_gpu_test_" + std::to_string(::getpid()) + "_" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override {
    ::unsetenv("FAKE_DELAY_MS");
    ::unsetenv("FAKE_DELAY_TOKENS");
    if (!HasFailure()) std::filesystem::remove_all(dir_);
  }

  TuneOptions Options(const std::string& name) {
    TuneOptions o;
    o.db_path = dir_ + "/" + name + ".db";
    o.cache_dir = dir_ + "/kernels-" + name;
    o.space = {{0}, false, {MathPath::kMma, MathPath::kFma}};  // 128 candidates, guided: 40 measurements a bucket
    o.worker_argv = {PLX_FAKE_WORKER};
    o.budget_s = 0;
    o.compile_threads = 2;  // the same in both runs, whatever the machine
    return o;
  }
  static TuneDeps Deps(int gpus) {
    TuneDeps d;
    for (int i = 0; i < gpus; ++i) d.devices.push_back(parallax::testing::FakeH100(i, "FakeGPU-scaling"));
    d.make_compile = [](const CompileTarget&) {
      return CompileFn([](const std::vector<Variant>&) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));  // a compile is never free
        CompileOutcome c;
        c.kind = CompileOutcome::Kind::kKeep;
        return c;
      });
    };
    return d;
  }

  std::string dir_;
};

// Every (bucket, variant, status) a database holds, and its best configs.
std::set<std::string> Measured(const std::string& db) {
  std::set<std::string> out;
  absl::StatusOr<std::unique_ptr<cache::Store>> store = cache::Store::Open(db);
  EXPECT_TRUE(store.ok()) << store.status();
  if (!store.ok()) return out;
  const absl::StatusOr<std::vector<cache::Measurement>> rows = (*store)->ListMeasurements();
  EXPECT_TRUE(rows.ok()) << rows.status();
  if (!rows.ok()) return out;
  for (const cache::Measurement& m : *rows)
    out.insert(m.bucket + " " + m.variant_key + " " + std::string(cache::ToString(m.status)));
  return out;
}

TEST_F(MultiGpu, TwoGpusTakeAboutHalfTheTimeOfOneWithTheSameWinners) {
  // The biggest bucket comes last in the request, as in `tune`'s default grid: handed out in
  // request order, one GPU would measure it alone at the end (1.33x here, not 2x).
  const TuneRequest req =
      Qwen({BucketFor(1, 1024), BucketFor(1, 4096), BucketFor(1, 16384), BucketFor(8, 1024), BucketFor(1, 65536)});
  // Delays dominate everything the tuner does itself (a few ms a measurement at most on a
  // loaded 2-core box, in both runs alike): 15 ms a measurement, 4x for b1-l65536 (65536
  // tokens / 16384), so the work is 4 + 1 + 1 + 1 + 1 = 8 bucket-weights of 40 measurements.
  ::setenv("FAKE_DELAY_MS", "15", 1);
  ::setenv("FAKE_DELAY_TOKENS", "16384", 1);

  absl::StatusOr<TuneReport> one = Tune(req, Options("one"), Deps(1));
  ASSERT_TRUE(one.ok()) << one.status();
  absl::StatusOr<TuneReport> two = Tune(req, Options("two"), Deps(2));
  ASSERT_TRUE(two.ok()) << two.status();

  const double speedup = one->timing.wall_s / two->timing.wall_s;
  EXPECT_GE(speedup, 1.6) << "one GPU " << one->timing.wall_s << " s, two " << two->timing.wall_s << " s\n"
                          << Summary(one->timing) << "\n"
                          << Summary(two->timing);
  EXPECT_LE(speedup, 2.3);  // two fake GPUs cannot do better than twice one

  // The same winners and the same measurements: which GPU took a bucket, and when, changes
  // nothing that is measured.
  ASSERT_EQ(one->units.size(), req.buckets.size());
  ASSERT_EQ(two->units.size(), req.buckets.size());
  std::set<int> devices;
  for (size_t i = 0; i < one->units.size(); ++i) {
    EXPECT_EQ(one->units[i].bucket, two->units[i].bucket);
    EXPECT_FALSE(one->units[i].best_key.empty()) << one->units[i].bucket;
    EXPECT_EQ(one->units[i].best_key, two->units[i].best_key) << one->units[i].bucket;
    EXPECT_EQ(one->units[i].best_us, two->units[i].best_us) << one->units[i].bucket;
    EXPECT_EQ(one->units[i].measured, two->units[i].measured) << one->units[i].bucket;
    devices.insert(two->units[i].device);
  }
  EXPECT_EQ(devices.size(), 2u);
  EXPECT_EQ(Measured(Options("one").db_path), Measured(Options("two").db_path));

  // Where the time went: both GPUs busy measuring, neither idle long at the end, one worker
  // process each for all its buckets.
  ASSERT_EQ(two->timing.workers.size(), 2u);
  for (const WorkerTiming& w : two->timing.workers) {
    EXPECT_GE(w.measure_s, 0.6 * w.wall_s) << Summary(two->timing);
    EXPECT_LE(w.idle_end_s, 0.25 * two->timing.wall_s) << Summary(two->timing);
    EXPECT_EQ(w.starts, 1) << Summary(two->timing);
    EXPECT_LE(w.measure_s + w.compile_wait_s + w.prepare_s + w.start_s + w.db_s, w.wall_s + 1e-3);
    EXPECT_GT(w.measurements, 0);
  }
  EXPECT_EQ(two->timing.order, "longest-first");
  EXPECT_GT(two->timing.compile.cpu_s + two->timing.compile.busy_s, 0);
  EXPECT_EQ(one->timing.workers.at(0).units, static_cast<int>(req.buckets.size()));
}

TEST(LongestFirst, TheBiggestBucketsGoFirstTiesInRequestOrder) {
  const TuneRequest req = Qwen({BucketFor(1, 1024), BucketFor(128, 65536), BucketFor(8, 1024), BucketFor(1, 1024 * 4),
                                BucketFor(32, 65536)});
  const std::vector<size_t> order = LongestFirst(req);
  ASSERT_EQ(order.size(), 5u);
  EXPECT_EQ(order[0], 1u);  // b128-l65536
  EXPECT_EQ(order[1], 4u);  // b32-l65536
  std::vector<double> cost;
  for (size_t i : order) cost.push_back(ExpectedUnitSeconds(req, req.buckets[i], 1));
  EXPECT_TRUE(std::is_sorted(cost.rbegin(), cost.rend()));
  EXPECT_EQ(LongestFirst(req), order);  // the same every time
}

// Two units scheduled at once, on one compile thread: their candidates are compiled in turn
// (A's first, B's first, A's second, ...), not all of A's before any of B's.
TEST(CompileQueueOrder, UnitsScheduledTogetherAreServedInTurn) {
  const TuneRequest req = Qwen({});
  std::vector<Variant> classes;  // eight variants of distinct compile classes
  std::set<std::string> seen;
  for (const Variant& v :
       BuildStaticSpace(req.problem, req.algorithm, LimitsFor(parallax::testing::FakeH100()), {}).variants)
    if (seen.insert(CompileClassKey(v)).second && classes.size() < 8) classes.push_back(v);
  ASSERT_EQ(classes.size(), 8u);
  const std::vector<Variant> a(classes.begin(), classes.begin() + 4), b(classes.begin() + 4, classes.end());

  std::mutex mu;
  std::condition_variable cv;
  bool release = false;
  std::vector<std::string> ran;
  CompileQueue q(
      [&](const std::vector<Variant>& members) {
        std::unique_lock<std::mutex> l(mu);
        ran.push_back(CompileClassKey(members.front()));
        cv.notify_all();
        cv.wait(l, [&] { return release; });  // the first holds the thread until both are scheduled
        CompileOutcome c;
        c.kind = CompileOutcome::Kind::kKeep;
        return c;
      },
      1);
  q.Schedule(a);
  {
    std::unique_lock<std::mutex> l(mu);
    cv.wait(l, [&] { return !ran.empty(); });  // a[0] is running
  }
  q.Schedule(b);
  {
    std::lock_guard<std::mutex> l(mu);
    release = true;
  }
  cv.notify_all();
  {  // all eight by the pool (a Wait now would compile a queued one itself)
    std::unique_lock<std::mutex> l(mu);
    ASSERT_TRUE(cv.wait_for(l, std::chrono::seconds(30), [&] { return ran.size() == classes.size(); }));
  }
  for (const Variant& v : classes) EXPECT_EQ(q.Wait(v).kind, CompileOutcome::Kind::kKeep);
  const std::vector<std::string> want = {CompileClassKey(a[0]), CompileClassKey(b[0]), CompileClassKey(a[1]),
                                         CompileClassKey(b[1]), CompileClassKey(a[2]), CompileClassKey(b[2]),
                                         CompileClassKey(a[3]), CompileClassKey(b[3])};
  EXPECT_EQ(ran, want);
  const CompileQueue::Stats s = q.stats();
  EXPECT_EQ(s.classes, 8);
  EXPECT_EQ(s.done, 8);
  EXPECT_EQ(s.inline_runs, 0);
  EXPECT_EQ(s.threads, 1);
}

}  // namespace
}  // namespace parallax::search
