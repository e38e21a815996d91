// The tuner end to end with no GPU: fake devices, a fake compiler and the fake worker
// process. Faulting and hanging candidates are recorded and tuning goes on; every
// measurement is in the database; best configs are served like the runtime asks for them;
// reruns resume; budgets and Ctrl-C stop cleanly.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "fake_gpu.h"
#include "fake_times.h"
#include "parallax/cache/device_key.h"
#include "parallax/cache/store.h"
#include "parallax/runtime/runtime.h"
#include "parallax/search/progress.h"
#include "parallax/search/tuner.h"
#include "parallax/search/tuning_db.h"
#include "tuned_db.h"

namespace parallax::search {
namespace {

DeviceInfo FakeGpu(int ordinal) { return parallax::testing::FakeH100(ordinal, "FakeGPU"); }

TuneRequest Qwen(std::vector<ShapeBucket> buckets) {
  TuneRequest r;
  r.problem.num_q_heads = 16;
  r.problem.num_kv_heads = 8;
  r.buckets = std::move(buckets);
  return r;
}

struct Measured {
  std::string pid, key;
  int reps = 0;
};

class TunerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::string(PLX_BINARY_DIR) + "/search_tuner_test_" + std::to_string(::getpid()) + "_" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    log_ = dir_ + "/worker.log";
    ::setenv("FAKE_LOG", log_.c_str(), 1);
  }
  void TearDown() override {
    ::unsetenv("FAKE_LOG");
    ::unsetenv("FAKE_CRASH_KEY");
    if (!HasFailure()) std::filesystem::remove_all(dir_);
  }

  TuneOptions Options() {
    TuneOptions o;
    o.db_path = dir_ + "/tuner.db";
    o.cache_dir = dir_ + "/kernels";
    o.space = {{0}, false, {MathPath::kMma, MathPath::kFma}};  // 128 candidates: quick
    o.worker_argv = {PLX_FAKE_WORKER};
    o.min_timeout_s = 1;
    o.compile_threads = 2;
    return o;
  }
  // prune_n64_s2: the fake ptxas prunes block_n 64 with 2 stages (decode's default is not
  // among them; prefill's is).
  TuneDeps Deps(int gpus = 1, bool prune_n64_s2 = true) {
    TuneDeps d;
    for (int i = 0; i < gpus; ++i) d.devices.push_back(FakeGpu(i));
    d.make_compile = [this, prune_n64_s2](const CompileTarget&) {
      return CompileFn([this, prune_n64_s2](const std::vector<Variant>& members) {
        CompileOutcome c;
        c.kind = CompileOutcome::Kind::kKeep;
        if (prune_n64_s2 && members.front().schedule().block_n == 64 && members.front().schedule().stages == 2) {
          c.kind = CompileOutcome::Kind::kPruned;
          c.reason = "plx_decode spills (64 bytes stored, 64 bytes loaded)";
        }
        std::lock_guard<std::mutex> l(compile_mu_);
        for (const Variant& m : members) compiled_.insert(m.Key());
        return c;
      });
    };
    return d;
  }
  std::vector<Measured> Measures() {
    std::vector<Measured> out;
    std::ifstream in(log_);
    std::string pid, op, key;
    int reps;
    while (in >> pid >> op >> key >> reps)
      if (op == "measure") out.push_back({pid, key, reps});
    return out;
  }
  std::unique_ptr<cache::Store> Db(const TuneOptions& o) { return *cache::Store::Open(o.db_path); }
  // The third column of the fake's "<pid> <op> <what> <n>" log lines for `op`, in order.
  std::vector<std::string> Logged(const std::string& want) {
    std::vector<std::string> out;
    std::ifstream in(log_);
    std::string pid, op, what;
    int n;
    while (in >> pid >> op >> what >> n)
      if (op == want) out.push_back(what);
    return out;
  }
  // The test-variant flag of every worker started so far ("-" for none).
  std::vector<std::string> WorkerFlags() { return Logged("start"); }

  std::string dir_, log_;
  std::mutex compile_mu_;
  std::set<std::string> compiled_;
};

TEST_F(TunerTest, FaultAndHangAreRecordedAndTheRestIsMeasured) {
  const TuneRequest req = Qwen({BucketFor(1, 4096), BucketFor(8, 4096), BucketFor(32, 16384), BucketFor(128, 1024)});
  const std::string def = DefaultVariantKey(req.problem, req.algorithm);
  TuneOptions o = Options();
  o.extra_candidates = {def + "-testfault", def + "-testhang"};
  o.allow_test_variants = true;
  int events = 0;
  o.progress = [&](const ProgressEvent&) { ++events; };
  absl::StatusOr<TuneReport> r = Tune(req, o, Deps(/*gpus=*/2));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->cancelled);
  ASSERT_EQ(r->units.size(), 4u);
  EXPECT_EQ(r->run_ids.size(), 2u);  // one run per GPU
  EXPECT_GT(events, 8);
  std::set<int> gpus;
  int pruned = 0;
  for (const UnitReport& u : r->units) {
    gpus.insert(u.device);
    EXPECT_TRUE(u.error.empty()) << u.bucket << ": " << u.error;
    EXPECT_EQ(u.failed, 1) << u.bucket;   // the fault
    EXPECT_EQ(u.timeout, 1) << u.bucket;  // the hang
    EXPECT_GT(u.measured, 20) << u.bucket;
    pruned += u.pruned;
    EXPECT_FALSE(u.best_key.empty());
    EXPECT_EQ(u.best_key.find("-test"), std::string::npos);
    EXPECT_GT(u.default_us, 0);
    EXPECT_LE(u.best_us, u.default_us);
  }
  EXPECT_EQ(gpus.size(), 2u);  // the buckets were split across both workers
  EXPECT_GT(pruned, 0);        // asked for, answered from the compile report, never timed

  auto db = Db(o);
  const std::string fp = FakeGpu(0).fingerprint();
  cache::MeasurementFilter f;
  f.device_fingerprint = fp;
  const std::vector<cache::Measurement> all = *db->ListMeasurements(f);
  std::map<std::string, int> by_status;
  for (const cache::Measurement& m : all) {
    ++by_status[std::string(cache::ToString(m.status))];
    if (m.variant_key == def + "-testfault") {
      EXPECT_EQ(m.status, cache::MeasurementStatus::kFailed);
      EXPECT_NE(m.error_text.find("ILLEGAL_ADDRESS"), std::string::npos) << m.error_text;
    } else if (m.variant_key == def + "-testhang") {
      EXPECT_EQ(m.status, cache::MeasurementStatus::kTimeout);
      EXPECT_NE(m.error_text.find("no answer"), std::string::npos);
    } else if (testing::FakeWrong(m.variant_key)) {
      EXPECT_EQ(m.status, cache::MeasurementStatus::kWrong);
    } else {
      EXPECT_EQ(m.status, cache::MeasurementStatus::kOk) << m.variant_key << ": " << m.error_text;
      EXPECT_DOUBLE_EQ(*m.median_us, testing::FakeTimeUs(m.variant_key));
    }
    EXPECT_TRUE(m.run_id.has_value());
    EXPECT_EQ(m.generator_version, kGeneratorVersion);
    EXPECT_EQ(m.nvrtc_version, 13000);
  }
  EXPECT_EQ(by_status["failed"], 4);
  EXPECT_EQ(by_status["timeout"], 4);
  // What the runtime's TunedStore asks: exact bucket at the current versions.
  for (const UnitReport& u : r->units) {
    absl::StatusOr<cache::BestConfig> b =
        db->GetBestConfig(fp, ProblemKey(req.problem, req.algorithm), u.bucket, {kGeneratorVersion, 13000});
    ASSERT_TRUE(b.ok()) << b.status();
    EXPECT_EQ(b->variant_key, u.best_key);
    EXPECT_DOUBLE_EQ(b->median_us, testing::FakeTimeUs(u.best_key));
  }
  for (int64_t id : r->run_ids) EXPECT_EQ(db->GetRun(id)->status, cache::RunStatus::kDone);
  // Pruned candidates were compiled but never sent to the worker.
  for (const Measured& m : Measures())
    EXPECT_FALSE(m.key.find("-n64-") != std::string::npos && m.key.find("-s2-") != std::string::npos) << m.key;
}

TEST_F(TunerTest, CrashingNormalCandidateCostsOneMeasurement) {
  const TuneRequest req = Qwen({BucketFor(8, 4096)});
  TuneOptions o = Options();
  o.strategy.kind = StrategyKind::kExhaustive;
  o.space = {{0}, false, {MathPath::kMma}};
  const std::string victim = DefaultVariantKey(req.problem, req.algorithm);
  ::setenv("FAKE_CRASH_KEY", victim.c_str(), 1);  // even the reference variant may crash
  absl::StatusOr<TuneReport> r = Tune(req, o, Deps());
  ASSERT_TRUE(r.ok()) << r.status();
  const UnitReport& u = r->units.at(0);
  EXPECT_EQ(u.failed, 1);
  EXPECT_GT(u.measured, 40);
  EXPECT_FALSE(u.best_key.empty());
  EXPECT_NE(u.best_key, victim);
  std::set<std::string> pids;
  for (const Measured& m : Measures()) pids.insert(m.pid);
  EXPECT_EQ(pids.size(), 2u);  // one restart
}

TEST_F(TunerTest, RerunResumesWithoutMeasuringAgain) {
  const TuneRequest req = Qwen({BucketFor(1, 65536), BucketFor(8, 1024)});
  TuneOptions o = Options();
  o.strategy.kind = StrategyKind::kExhaustive;
  o.space = {{0}, false, {MathPath::kMma}};
  std::atomic<bool> cancel{false};
  o.cancel = &cancel;
  int measured = 0;
  o.progress = [&](const ProgressEvent& e) {
    if (e.kind == ProgressEvent::Kind::kMeasured && !e.outcome.cached && e.outcome.verdict != Verdict::kPruned &&
        ++measured == 60)
      cancel = true;
  };
  absl::StatusOr<TuneReport> first = Tune(req, o, Deps());
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_TRUE(first->cancelled);
  const std::vector<Measured> before = Measures();
  EXPECT_GE(before.size(), 60u);
  EXPECT_LE(before.size(), 61u);
  auto db = Db(o);
  EXPECT_EQ(db->GetRun(first->run_ids.at(0))->status, cache::RunStatus::kCancelled);
  // What was measured is stored, and the interrupted bucket already has a best so far.
  EXPECT_EQ(db->ListMeasurements()->size(), before.size());

  cancel = false;
  o.progress = nullptr;
  absl::StatusOr<TuneReport> second = Tune(req, o, Deps());
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_FALSE(second->cancelled);
  const std::vector<Measured> after = Measures();
  std::map<std::string, int> times;  // "bucket-less" keys: exhaustive measures each once per bucket
  for (const Measured& m : after) ++times[m.key];
  std::set<std::string> first_keys;
  for (const Measured& m : before) first_keys.insert(m.key);
  // The first run only reached the first bucket: none of its candidates is measured again there.
  const UnitReport* b1 = nullptr;
  for (const UnitReport& u : second->units)
    if (u.bucket == "b1-l65536") b1 = &u;
  ASSERT_NE(b1, nullptr);
  EXPECT_EQ(b1->cached, static_cast<int>(before.size()));
  EXPECT_EQ(b1->measured + b1->cached + b1->pruned, b1->candidates);
  for (const auto& [key, n] : times) EXPECT_LE(n, 2) << key;  // at most once per bucket overall
  EXPECT_EQ(db->ListMeasurements()->size(), after.size());

  // A third run finds everything done.
  const size_t total = after.size();
  absl::StatusOr<TuneReport> third = Tune(req, o, Deps());
  ASSERT_TRUE(third.ok());
  EXPECT_EQ(Measures().size(), total);
  for (const UnitReport& u : third->units) EXPECT_EQ(u.measured, 0) << u.bucket;
}

TEST_F(TunerTest, BudgetSplitsTimeOverBucketsAndKeepsTheBestSoFar) {
  const TuneRequest req = Qwen({BucketFor(1, 4096), BucketFor(32, 4096)});
  TuneOptions o = Options();
  FakeClock clock;
  o.budget_s = 10;
  o.progress = [&](const ProgressEvent& e) {
    if (e.kind == ProgressEvent::Kind::kMeasured && !e.outcome.cached && e.outcome.verdict != Verdict::kPruned)
      clock.Advance(1.0);
  };
  TuneDeps d = Deps();
  d.clock = &clock;
  absl::StatusOr<TuneReport> r = Tune(req, o, d);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->budget_exhausted);
  ASSERT_EQ(r->units.size(), 2u);
  for (const UnitReport& u : r->units) {
    EXPECT_TRUE(u.budget_exhausted) << u.bucket;
    EXPECT_GE(u.measured, 4) << u.bucket;  // an equal share each: ~5 s
    EXPECT_LE(u.measured, 6) << u.bucket;
    EXPECT_FALSE(u.best_key.empty()) << u.bucket;
  }
}

TEST_F(TunerTest, WarmStartMeasuresTheNeighbourBucketsWinnerEarly) {
  TuneOptions o = Options();
  absl::StatusOr<TuneReport> a = Tune(Qwen({BucketFor(8, 4096)}), o, Deps());
  ASSERT_TRUE(a.ok()) << a.status();
  const std::string winner = a->units.at(0).best_key;
  const size_t before = Measures().size();
  absl::StatusOr<TuneReport> b = Tune(Qwen({BucketFor(8, 8192)}), o, Deps());
  ASSERT_TRUE(b.ok()) << b.status();
  const std::vector<Measured> m = Measures();
  ASSERT_GT(m.size(), before + 2);
  const TuneRequest req = Qwen({});
  EXPECT_EQ(m[before].key, DefaultVariantKey(req.problem, req.algorithm));
  EXPECT_EQ(m[before + 1].key, winner);  // seeds: the default, then the neighbour's best
}

// ---- Warm start across GPU models (warm_start.h; the ranking itself: warm_start_test.cc) ----

std::string DevKey(const DeviceInfo& d) { return cache::DeviceKey(d.fingerprint()); }

std::string FileBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// A database tuned on an H100 seeds a tune on an H200 (another device key, same arch): right
// after the runtime's default, the H100's winner of the bucket is measured, then what it
// measured next fastest; the report, the progress and the run record say where the seeds came
// from. (The fake worker's times do not depend on the GPU, so the H100's winner stays the winner.)
TEST_F(TunerTest, AnH100TunedDatabaseSeedsAnH200Tune) {
  TuneOptions o = Options();
  TuneDeps h100 = Deps();
  h100.devices = {parallax::testing::FakeH100()};
  absl::StatusOr<TuneReport> a = Tune(Qwen({BucketFor(8, 4096)}), o, h100);
  ASSERT_TRUE(a.ok()) << a.status();
  const std::string winner = a->units.at(0).best_key;
  const size_t before = Measures().size();

  std::vector<std::string> messages;
  o.progress = [&](const ProgressEvent& e) {
    if (e.kind == ProgressEvent::Kind::kMessage) messages.push_back(e.message);
  };
  TuneDeps h200 = Deps();
  h200.devices = {parallax::testing::FakeH200()};
  absl::StatusOr<TuneReport> b = Tune(Qwen({BucketFor(8, 4096)}), o, h200);
  ASSERT_TRUE(b.ok()) << b.status();
  const std::vector<Measured> m = Measures();
  ASSERT_GT(m.size(), before + 2);
  const TuneRequest req = Qwen({});
  EXPECT_EQ(m[before].key, DefaultVariantKey(req.problem, req.algorithm));
  EXPECT_EQ(m[before + 1].key, winner);
  const UnitReport& u = b->units.at(0);
  ASSERT_EQ(u.warm_start.origins.size(), 1u);
  const SeedSource& from = u.warm_start.origins[0].source;
  EXPECT_EQ(from.device, DevKey(parallax::testing::FakeH100()));
  EXPECT_EQ(from.bucket, "b8-l4096");
  EXPECT_FALSE(from.same_device);
  EXPECT_EQ(from.db_index, 0);
  EXPECT_EQ(u.warm_start.seeds.size(), 4u);
  EXPECT_EQ(u.warm_start.seeds.front(), winner);
  for (size_t i = 0; i < u.warm_start.seeds.size(); ++i) EXPECT_EQ(m[before + 1 + i].key, u.warm_start.seeds[i]);
  EXPECT_EQ(u.best_key, winner);
  EXPECT_EQ(messages, std::vector<std::string>{"gpu0 b8-l4096: seeds from NVIDIA H100 80GB HBM3 b8-l4096 (4)"});
  absl::StatusOr<cache::RunInfo> run = Db(o)->GetRun(b->run_ids.at(0));
  ASSERT_TRUE(run.ok()) << run.status();
  const nlohmann::json& w = run->progress["buckets"]["b8-l4096"]["warm_start"];
  ASSERT_TRUE(w.is_object()) << run->progress.dump();
  EXPECT_EQ(w["sources"][0]["device"], from.device);
  EXPECT_EQ(w["sources"][0]["bucket"], "b8-l4096");
  EXPECT_EQ(w["seeds"][0], winner);
}

// `seed_dbs`: another machine's databases, read-only. Of an A100 and an H100 that tuned the
// bucket, the H100 (same arch) seeds the H200; the file is not changed, nothing of it is
// copied into the database being tuned, and the run's params name it. A missing seed
// database stops the run before the database being tuned is created; the database being
// tuned is no seed database.
TEST_F(TunerTest, TheNearestGpuModelOfASeedDatabaseSeedsAndTheFileIsOnlyRead) {
  TuneOptions o = Options();
  const TuneRequest req = Qwen({BucketFor(8, 4096)});
  const std::vector<Variant> space =
      BuildStaticSpace(req.problem, req.algorithm, LimitsFor(parallax::testing::FakeH200()), o.space).variants;
  ASSERT_GT(space.size(), 20u);
  const std::string seed = dir_ + "/fleet.db";
  {
    auto s = *cache::Store::Open(seed);
    const std::string pk = ProblemKey(req.problem, req.algorithm);
    testing::WriteTuned(*s, parallax::testing::FakeA100(), pk, "b8-l4096", {space[5].Key(), space[6].Key()});
    testing::WriteTuned(*s, parallax::testing::FakeH100(), pk, "b8-l4096", {space[10].Key(), space[11].Key()});
  }
  const std::string bytes = FileBytes(seed);
  o.seed_dbs = {seed};
  TuneDeps h200 = Deps(1, /*prune_n64_s2=*/false);
  h200.devices = {parallax::testing::FakeH200()};
  absl::StatusOr<TuneReport> r = Tune(req, o, h200);
  ASSERT_TRUE(r.ok()) << r.status();
  const std::vector<Measured> m = Measures();
  ASSERT_GT(m.size(), 3u);
  EXPECT_EQ(m[1].key, space[10].Key());
  EXPECT_EQ(m[2].key, space[11].Key());
  const UnitReport& u = r->units.at(0);
  EXPECT_EQ(u.warm_start.seeds, (std::vector<std::string>{space[10].Key(), space[11].Key()}));
  ASSERT_EQ(u.warm_start.origins.size(), 1u);
  EXPECT_EQ(u.warm_start.origins[0].source.device, DevKey(parallax::testing::FakeH100()));
  EXPECT_EQ(u.warm_start.origins[0].source.db, seed);
  EXPECT_EQ(FileBytes(seed), bytes);
  auto db = Db(o);
  const std::vector<cache::DeviceInfo> devices = *db->ListDevices();
  ASSERT_EQ(devices.size(), 1u);
  EXPECT_EQ(devices[0].fingerprint, parallax::testing::FakeH200().fingerprint());
  EXPECT_EQ(db->GetRun(r->run_ids.at(0))->params["seed_dbs"], nlohmann::json::array({seed}));

  o.db_path = dir_ + "/fresh.db";
  o.seed_dbs = {dir_ + "/missing.db"};
  r = Tune(req, o, h200);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound) << r.status();
  EXPECT_NE(r.status().message().find("missing.db"), std::string::npos) << r.status();
  EXPECT_FALSE(std::filesystem::exists(o.db_path));
  o.seed_dbs = {seed};
  o.db_path = seed;
  r = Tune(req, o, h200);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  EXPECT_EQ(FileBytes(seed), bytes);
}

// Seeds must be candidates here: an H100's prefill winner of the sm_90a wgmma family does not
// seed an A100 (sm_80). It is dropped, with the reason on record, never compiled or measured;
// the H100's next key, an mma one, is measured right after the default.
TEST_F(TunerTest, SeedsThatDoNotRunOnThisGpuAreDroppedNeverMeasured) {
  TuneRequest req = Qwen({PrefillBucketFor(1, 4096, 4096)});
  req.problem.mode = Mode::kPrefill;
  TuneOptions o = Options();
  const DeviceInfo a100 = parallax::testing::FakeA100();
  const std::string wgmma = DefaultVariantKey(req.problem, req.algorithm, 90);
  const std::string def = DefaultVariantKey(req.problem, req.algorithm);
  ASSERT_NE(wgmma.find(".wgmma-"), std::string::npos) << wgmma;
  std::string mma;
  for (const Variant& v : BuildStaticSpace(req.problem, req.algorithm, LimitsFor(a100), o.space).variants)
    if (v.Key() != def && v.Key().find(".mma-") != std::string::npos) {
      mma = v.Key();
      break;
    }
  ASSERT_FALSE(mma.empty());
  {
    auto s = *cache::Store::Open(o.db_path);
    testing::WriteTuned(*s, parallax::testing::FakeH100(), ProblemKey(req.problem, req.algorithm), "t4096-l4096",
                        {wgmma, mma});
  }
  std::vector<std::string> messages;
  o.progress = [&](const ProgressEvent& e) {
    if (e.kind == ProgressEvent::Kind::kMessage) messages.push_back(e.message);
  };
  TuneDeps d = Deps(1, /*prune_n64_s2=*/false);
  d.devices = {a100};
  absl::StatusOr<TuneReport> r = Tune(req, o, d);
  ASSERT_TRUE(r.ok()) << r.status();
  const UnitReport& u = r->units.at(0);
  EXPECT_TRUE(u.error.empty()) << u.error;
  EXPECT_EQ(u.warm_start.seeds, std::vector<std::string>{mma});
  EXPECT_EQ(u.warm_start.dropped, 1);
  ASSERT_EQ(u.warm_start.dropped_why.size(), 1u);
  EXPECT_NE(u.warm_start.dropped_why[0].find("does not run on sm_80"), std::string::npos) << u.warm_start.dropped_why[0];
  const std::vector<Measured> m = Measures();
  ASSERT_GT(m.size(), 2u);
  EXPECT_EQ(m[0].key, def);
  EXPECT_EQ(m[1].key, mma);
  for (const Measured& x : m) EXPECT_EQ(x.key.find(".wgmma-"), std::string::npos) << x.key;
  ASSERT_EQ(messages.size(), 1u);
  EXPECT_NE(messages[0].find("1 not valid here, dropped"), std::string::npos) << messages[0];
  std::lock_guard<std::mutex> l(compile_mu_);
  for (const std::string& k : compiled_) EXPECT_EQ(k.find(".wgmma-"), std::string::npos) << k;
}

TEST_F(TunerTest, ProgressLinesWhenNotATerminal) {
  const std::string path = dir_ + "/progress.txt";
  FILE* f = std::fopen(path.c_str(), "w");
  ASSERT_NE(f, nullptr);
  ProgressPrinter printer(f, /*tty=*/false, /*interval_s=*/0);
  TuneOptions o = Options();
  o.progress = [&](const ProgressEvent& e) { printer(e); };
  const TuneRequest req = Qwen({BucketFor(8, 4096)});
  o.extra_candidates = {DefaultVariantKey(req.problem, req.algorithm) + "-testfault"};
  o.allow_test_variants = true;
  ASSERT_TRUE(Tune(req, o, Deps()).ok());
  printer.Finish();
  std::fclose(f);
  std::ifstream in(path);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("tune: gpu0 b8-l4096 (1/1): 128 candidates"), std::string::npos) << text;
  EXPECT_NE(text.find("variants 1/"), std::string::npos) << text;
  EXPECT_NE(text.find(" best "), std::string::npos) << text;
  EXPECT_NE(text.find("ETA "), std::string::npos) << text;
  EXPECT_NE(text.find("failed mma-n64-w4-s3-splitauto-g2-testfault: worker killed by signal 6"), std::string::npos)
      << text;
  EXPECT_NE(text.find("tune: gpu0 b8-l4096 done: best "), std::string::npos) << text;
  EXPECT_EQ(text.find('\r'), std::string::npos);  // no redrawing into a log
}

// Planting a test-only candidate is an explicit opt-in, and only a tuner that planted one
// starts its workers with --allow-test-variants (without it they refuse such keys).
TEST_F(TunerTest, TestOnlyCandidatesNeedTheOptInAndOnlyThenReachTheWorker) {
  const TuneRequest req = Qwen({BucketFor(8, 4096)});
  const std::string fault = DefaultVariantKey(req.problem, req.algorithm) + "-testfault";
  TuneOptions o = Options();
  o.extra_candidates = {fault};
  absl::StatusOr<TuneReport> r = Tune(req, o, Deps());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("allow_test_variants"), std::string::npos) << r.status();
  EXPECT_TRUE(WorkerFlags().empty());

  o.allow_test_variants = true;
  r = Tune(req, o, Deps());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->units.at(0).failed, 1);
  std::vector<std::string> flags = WorkerFlags();
  EXPECT_FALSE(flags.empty());
  for (const std::string& flag : flags) EXPECT_EQ(flag, "--allow-test-variants");
  cache::MeasurementFilter f;
  f.device_fingerprint = FakeGpu(0).fingerprint();
  const std::vector<cache::Measurement> all = *Db(o)->ListMeasurements(f);
  int faults = 0;
  for (const cache::Measurement& m : all) {
    if (m.variant_key != fault) continue;
    ++faults;  // it ran and crashed the worker, rather than being refused
    EXPECT_NE(m.error_text.find("ILLEGAL_ADDRESS"), std::string::npos) << m.error_text;
  }
  EXPECT_EQ(faults, 1);

  // No test-only candidate planted: no flag, even with the option set.
  std::remove(log_.c_str());
  o.extra_candidates.clear();
  ASSERT_TRUE(Tune(Qwen({BucketFor(1, 4096)}), o, Deps()).ok());
  flags = WorkerFlags();
  EXPECT_FALSE(flags.empty());
  for (const std::string& flag : flags) EXPECT_EQ(flag, "-");
}

// A prefill problem end to end: prefill buckets (query tokens, context), the worker prepared
// with the bucket's prefill shape, only prefill variants measured, cost-ordered, winners
// filed under the prefill bucket where the runtime's TunedStore looks.
TEST_F(TunerTest, PrefillIsTunedEndToEnd) {
  TuneRequest req = Qwen({PrefillBucketFor(1, 4096, 4096), PrefillBucketFor(1, 512, 8192)});
  req.problem.mode = Mode::kPrefill;
  TuneOptions o = Options();
  std::vector<std::string> started;
  o.progress = [&](const ProgressEvent& e) {
    if (e.kind == ProgressEvent::Kind::kUnitStart) started.push_back(e.bucket);
  };
  // Keep prefill's default (mma-m64-n64-w4-s2) so that it is measured as the baseline.
  absl::StatusOr<TuneReport> r = Tune(req, o, Deps(1, /*prune_n64_s2=*/false));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->problem_key, "prefill-bf16-d128-h16x8-contig-nowin.learned-plain");
  ASSERT_EQ(r->units.size(), 2u);
  EXPECT_EQ(started, (std::vector<std::string>{"t4096-l4096", "t512-l8192"}));
  auto db = Db(o);
  const std::string fp = FakeGpu(0).fingerprint();
  for (const UnitReport& u : r->units) {
    EXPECT_TRUE(u.error.empty()) << u.bucket << ": " << u.error;
    EXPECT_GT(u.measured, 10) << u.bucket;
    EXPECT_GT(u.default_us, 0) << u.bucket;
    EXPECT_LE(u.best_us, u.default_us) << u.bucket;
    EXPECT_EQ(u.best_key.rfind("prefill-", 0), 0u) << u.best_key;
    absl::StatusOr<cache::BestConfig> b =
        db->GetBestConfig(fp, ProblemKey(req.problem, req.algorithm), u.bucket, {kGeneratorVersion, 13000});
    ASSERT_TRUE(b.ok()) << u.bucket << ": " << b.status();
    EXPECT_EQ(b->variant_key, u.best_key);
  }
  // The worker was prepared with each bucket's shape (ShapeOf): a full causal prefill and a
  // 512-query chunk at the end of 8192 keys.
  const std::vector<std::string> prepared = Logged("shape");
  EXPECT_EQ(std::set<std::string>(prepared.begin(), prepared.end()), (std::set<std::string>{"b1-q4096-k4096", "b1-q512-k8192"}));
  const std::vector<Measured> measured = Measures();
  EXPECT_FALSE(measured.empty());
  for (const Measured& m : measured) EXPECT_EQ(m.key.rfind("prefill-", 0), 0u) << m.key;
}

// Prefill on an sm_90 GPU with the default paths: the wgmma family's schedules are compiled
// and measured, and the runtime's default there (the wgmma family's) is measured first, raced
// as the baseline and reported as default_us; the portable mma default stays the reference
// the worker is prepared with.
TEST_F(TunerTest, PrefillOnSm90SearchesTheWgmmaFamily) {
  TuneRequest req = Qwen({PrefillBucketFor(1, 4096, 4096)});
  req.problem.mode = Mode::kPrefill;
  TuneOptions o = Options();
  o.space.paths = {};  // the device's families
  absl::StatusOr<TuneReport> r = Tune(req, o, Deps(1, /*prune_n64_s2=*/false));
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->units.size(), 1u);
  const UnitReport& u = r->units[0];
  EXPECT_TRUE(u.error.empty()) << u.error;
  const std::string own = DefaultVariantKey(req.problem, req.algorithm, 90);
  const std::string portable = DefaultVariantKey(req.problem, req.algorithm);
  ASSERT_NE(own.find(".wgmma-"), std::string::npos) << own;
  ASSERT_NE(portable.find(".mma-"), std::string::npos) << portable;
  const std::vector<Measured> measured = Measures();
  ASSERT_FALSE(measured.empty());
  EXPECT_EQ(measured.front().key, own);
  size_t wgmma = 0;
  for (const Measured& m : measured) wgmma += m.key.find(".wgmma-") != std::string::npos;
  EXPECT_GT(wgmma, 1u);
  EXPECT_DOUBLE_EQ(u.default_us, testing::FakeTimeUs(own));
  EXPECT_LE(u.best_us, u.default_us);
  const std::vector<std::string> prepared = Logged("prepare");
  ASSERT_FALSE(prepared.empty());
  for (const std::string& k : prepared) EXPECT_EQ(k, portable);
  std::lock_guard<std::mutex> l(compile_mu_);
  EXPECT_TRUE(compiled_.count(own));
}

// On an sm_80 GPU the wgmma family is never compiled or measured: not in the default space,
// and left out with a message when asked for by name; the rest is tuned as before.
TEST_F(TunerTest, PrefillOnSm80LeavesTheWgmmaFamilyOut) {
  TuneRequest req = Qwen({PrefillBucketFor(1, 4096, 4096)});
  req.problem.mode = Mode::kPrefill;
  DeviceInfo a100 = FakeGpu(0);
  a100.name = "FakeA100";
  a100.cc_major = 8;
  a100.max_smem_per_block_optin = 163 * 1024;
  a100.smem_per_sm = 164 * 1024;
  for (const std::vector<MathPath>& paths :
       {std::vector<MathPath>{}, std::vector<MathPath>{MathPath::kWgmma, MathPath::kMma, MathPath::kFma}}) {
    TuneOptions o = Options();
    o.db_path = dir_ + "/tuner" + std::to_string(paths.size()) + ".db";
    o.space.paths = paths;
    std::vector<std::string> messages;
    o.progress = [&](const ProgressEvent& e) {
      if (e.kind == ProgressEvent::Kind::kMessage) messages.push_back(e.message);
    };
    TuneDeps d = Deps(1, /*prune_n64_s2=*/false);
    d.devices = {a100};
    absl::StatusOr<TuneReport> r = Tune(req, o, d);
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_EQ(r->units.size(), 1u);
    EXPECT_TRUE(r->units[0].error.empty()) << r->units[0].error;
    EXPECT_FALSE(r->units[0].best_key.empty());
    EXPECT_GT(r->units[0].default_us, 0);  // the portable default is the baseline here
    if (paths.empty()) {
      EXPECT_TRUE(messages.empty());
    } else {
      ASSERT_EQ(messages.size(), 1u);
      EXPECT_EQ(messages[0], "gpu0: left out path wgmma: the prefill_sm90 family does not run on sm_80 "
                             "(it runs on sm_90 only)");
    }
  }
  for (const Measured& m : Measures()) EXPECT_EQ(m.key.find(".wgmma-"), std::string::npos) << m.key;
  std::lock_guard<std::mutex> l(compile_mu_);
  EXPECT_FALSE(compiled_.empty());
  for (const std::string& k : compiled_) EXPECT_EQ(k.find(".wgmma-"), std::string::npos) << k;
}

// A backward (bwd) problem end to end, as prefill is: prefill buckets, the worker prepared
// with the bucket's prefill shape and the bwd default (the worker's BackwardBench), only bwd
// variants measured (the family has mma only: the fma path asked for is left out with a
// message), and each winner filed under its bucket with a key that parses back to the
// problem tuned.
TEST_F(TunerTest, BackwardIsTunedEndToEnd) {
  TuneRequest req = Qwen({PrefillBucketFor(1, 4096, 4096), PrefillBucketFor(1, 512, 8192)});
  req.problem.mode = Mode::kBackward;
  TuneOptions o = Options();  // paths mma and fma
  std::vector<std::string> messages;
  o.progress = [&](const ProgressEvent& e) {
    if (e.kind == ProgressEvent::Kind::kMessage) messages.push_back(e.message);
  };
  absl::StatusOr<TuneReport> r = Tune(req, o, Deps());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->problem_key, "bwd-bf16-d128-h16x8-contig-nowin.learned-plain");
  ASSERT_EQ(messages.size(), 1u);
  EXPECT_EQ(messages[0], "gpu0: left out path fma: no bwd family serves it");
  ASSERT_EQ(r->units.size(), 2u);
  auto db = Db(o);
  const std::string fp = FakeGpu(0).fingerprint();
  const std::string def = DefaultVariantKey(req.problem, req.algorithm);
  ASSERT_EQ(def.rfind("bwd-bf16-d128-h16x8-contig-nowin.learned-plain.mma-", 0), 0u) << def;
  std::set<std::string> bests;
  for (const UnitReport& u : r->units) {
    EXPECT_TRUE(u.error.empty()) << u.bucket << ": " << u.error;
    EXPECT_GT(u.measured, 1) << u.bucket;
    EXPECT_DOUBLE_EQ(u.default_us, testing::FakeTimeUs(def)) << u.bucket;
    EXPECT_LE(u.best_us, u.default_us) << u.bucket;
    absl::StatusOr<cache::BestConfig> b =
        db->GetBestConfig(fp, ProblemKey(req.problem, req.algorithm), u.bucket, {kGeneratorVersion, 13000});
    ASSERT_TRUE(b.ok()) << u.bucket << ": " << b.status();
    EXPECT_EQ(b->variant_key, u.best_key);
    absl::StatusOr<Variant> v = Variant::Parse(b->variant_key);  // the stored key round-trips
    ASSERT_TRUE(v.ok()) << b->variant_key << ": " << v.status();
    EXPECT_EQ(v->Key(), b->variant_key);
    EXPECT_EQ(v->problem(), req.problem);
    EXPECT_EQ(v->algorithm(), req.algorithm);
    EXPECT_EQ(v->problem().mode, Mode::kBackward);
    bests.insert(u.bucket);
  }
  EXPECT_EQ(bests, (std::set<std::string>{"t4096-l4096", "t512-l8192"}));
  // Prepared with the bwd default at each bucket's prefill shape.
  for (const std::string& k : Logged("prepare")) EXPECT_EQ(k, def);
  const std::vector<std::string> prepared = Logged("shape");
  EXPECT_EQ(std::set<std::string>(prepared.begin(), prepared.end()), (std::set<std::string>{"b1-q4096-k4096", "b1-q512-k8192"}));
  // Only bwd mma variants reached the worker, and each winner is one of them, at its time.
  const std::vector<Measured> measured = Measures();
  ASSERT_FALSE(measured.empty());
  std::set<std::string> keys;
  for (const Measured& m : measured) {
    EXPECT_EQ(m.key.rfind("bwd-", 0), 0u) << m.key;
    EXPECT_NE(m.key.find(".mma-"), std::string::npos) << m.key;
    keys.insert(m.key);
  }
  EXPECT_GT(keys.size(), 2u);
  for (const UnitReport& u : r->units) {
    EXPECT_TRUE(keys.count(u.best_key)) << u.best_key;
    EXPECT_DOUBLE_EQ(u.best_us, testing::FakeTimeUs(u.best_key)) << u.best_key;
  }
}

TEST_F(TunerTest, RejectsBadRequests) {
  TuneOptions o = Options();
  TuneRequest prefill = Qwen({BucketFor(1, 1024)});  // a decode bucket for a prefill problem
  prefill.problem.mode = Mode::kPrefill;
  absl::StatusOr<TuneReport> mixed = Tune(prefill, o, Deps());
  EXPECT_EQ(mixed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(mixed.status().message().find("bucket b1-l1024: a decode bucket for a prefill problem"),
            std::string::npos) << mixed.status();
  EXPECT_EQ(Tune(Qwen({PrefillBucketFor(1, 1024, 1024)}), o, Deps()).status().code(),
            absl::StatusCode::kInvalidArgument);
  TuneRequest bwd = Qwen({BucketFor(1, 1024)});  // the backward is tuned on prefill buckets
  bwd.problem.mode = Mode::kBackward;
  absl::StatusOr<TuneReport> bwd_mixed = Tune(bwd, o, Deps());
  EXPECT_EQ(bwd_mixed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bwd_mixed.status().message().find("bucket b1-l1024: a decode bucket for a bwd problem"),
            std::string::npos) << bwd_mixed.status();
  bwd.problem.kv_layout = KvLayout::kPaged;  // the backward reads contiguous K/V only
  bwd.problem.page_size = 16;
  bwd.buckets = {PrefillBucketFor(1, 1024, 1024)};
  EXPECT_EQ(Tune(bwd, o, Deps()).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Tune(Qwen({}), o, Deps()).status().code(), absl::StatusCode::kInvalidArgument);
  TuneRequest bad = Qwen({BucketFor(1, 1024)});
  bad.problem.num_kv_heads = 3;
  EXPECT_EQ(Tune(bad, o, Deps()).status().code(), absl::StatusCode::kInvalidArgument);
  o.extra_candidates = {"decode-bf16-d128-h32x8-contig-nowin.learned-plain.mma-n64-w4-s3-splitauto-g4-testfault"};
  EXPECT_EQ(Tune(Qwen({BucketFor(1, 1024)}), o, Deps()).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(TunerTest, WithoutAGpuFailsFast) {
  if (QueryDevice(0).ok()) GTEST_SKIP() << "a GPU is present";
  TuneOptions o = Options();
  TuneDeps d;  // ask the driver
  absl::StatusOr<TuneReport> r = Tune(Qwen({BucketFor(1, 1024)}), o, d);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("GPU"), std::string::npos) << r.status();
}

}  // namespace
}  // namespace parallax::search
