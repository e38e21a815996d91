// The worker watchdog against real child processes, no GPU: a fake worker that crashes or
// hangs on chosen keys, `sleep` that never speaks, a missing program. A bad candidate costs
// one 'failed'/'timeout' answer and a restart; the next candidate is measured normally.
#include <gtest/gtest.h>

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "fake_times.h"
#include "parallax/search/worker_client.h"

namespace parallax::search {
namespace {

const char* kKey = "decode-bf16-d128-h16x8-contig-nowin.learned-plain.mma-n64-w4-s3-splitauto-g2";

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

WorkerRequest Prepare() {
  WorkerRequest r;
  r.op = Op::kPrepare;
  r.default_key = kKey;
  r.batch = 1;
  r.seqlen = 4096;
  return r;
}

class Watchdog : public ::testing::Test {
 protected:
  void SetUp() override {
    log_ = std::string(PLX_BINARY_DIR) + "/search_watchdog_" + std::to_string(::getpid()) + ".log";
    std::remove(log_.c_str());
    ::setenv("FAKE_LOG", log_.c_str(), 1);
  }
  void TearDown() override {
    std::remove(log_.c_str());
    for (const char* e : {"FAKE_LOG", "FAKE_CRASH_KEY", "FAKE_HANG_KEY", "FAKE_GARBAGE_KEY", "FAKE_NO_READY"})
      ::unsetenv(e);
  }
  // With the opt-in: these tests use the test-only keys to make the fake crash and hang.
  WorkerOptions Options() {
    WorkerOptions o;
    o.argv = {PLX_FAKE_WORKER, "--allow-test-variants"};
    o.min_timeout_s = 1;
    o.ready_timeout_s = 5;
    o.prepare_timeout_s = 5;
    return o;
  }
  std::vector<std::string> LogLines(const std::string& op) {
    std::vector<std::string> out;
    std::ifstream in(log_);
    for (std::string line; std::getline(in, line);)
      if (line.find(" " + op + " ") != std::string::npos) out.push_back(line);
    return out;
  }
  std::string log_;
};

TEST_F(Watchdog, MeasuresThroughTheWorker) {
  WorkerClient w(Options());
  ASSERT_TRUE(w.Prepare(Prepare()).ok());
  absl::StatusOr<Outcome> o = w.Measure(kKey, 5, 0.01);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->verdict, Verdict::kOk);
  EXPECT_DOUBLE_EQ(o->median_us, testing::FakeTimeUs(kKey));
  EXPECT_EQ(o->reps, 5);
  EXPECT_EQ(w.starts(), 1);
  EXPECT_EQ(w.worker_info()["device"], "fake");
}

TEST_F(Watchdog, CrashIsFailedWithTheReasonAndTheNextCandidateRunsInAFreshWorker) {
  WorkerClient w(Options());
  ASSERT_TRUE(w.Prepare(Prepare()).ok());
  const std::string fault = std::string(kKey) + "-testfault";
  absl::StatusOr<Outcome> o = w.Measure(fault, 3, 0.01);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->verdict, Verdict::kFailed);
  EXPECT_NE(o->error.find("signal 6"), std::string::npos) << o->error;
  EXPECT_NE(o->error.find("CUDA_ERROR_ILLEGAL_ADDRESS"), std::string::npos) << o->error;  // the stderr tail
  o = w.Measure(kKey, 3, 0.01);
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->verdict, Verdict::kOk);
  EXPECT_EQ(w.starts(), 2);
  EXPECT_EQ(LogLines("prepare").size(), 2u);  // the bucket was prepared again after the restart
}

TEST_F(Watchdog, HangIsTimeoutAfterTheLimitAndTheWorkerIsReplaced) {
  WorkerClient w(Options());
  ASSERT_TRUE(w.Prepare(Prepare()).ok());
  EXPECT_DOUBLE_EQ(w.TimeoutFor(0.01), 1.0);  // max(min, 20 x expected)
  EXPECT_DOUBLE_EQ(w.TimeoutFor(0.5), 10.0);
  const double t0 = Now();
  absl::StatusOr<Outcome> o = w.Measure(std::string(kKey) + "-testhang", 3, 0.01);
  const double took = Now() - t0;
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->verdict, Verdict::kTimeout);
  EXPECT_NE(o->error.find("no answer"), std::string::npos);
  EXPECT_GE(took, 0.9);
  EXPECT_LT(took, 5.0);
  o = w.Measure(kKey, 3, 0.01);
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->verdict, Verdict::kOk);
  EXPECT_EQ(w.starts(), 2);
}

// Without --allow-test-variants a worker answers a test-only key 'failed' (as `parallax
// worker` does) instead of running it: no crash, no restart.
TEST_F(Watchdog, TestOnlyKeysAreRefusedWithoutTheFlag) {
  WorkerOptions opts = Options();
  opts.argv = {PLX_FAKE_WORKER};
  WorkerClient w(opts);
  ASSERT_TRUE(w.Prepare(Prepare()).ok());
  for (const char* suffix : {"-testfault", "-testhang"}) {
    absl::StatusOr<Outcome> o = w.Measure(std::string(kKey) + suffix, 3, 0.01);
    ASSERT_TRUE(o.ok()) << o.status();
    EXPECT_EQ(o->verdict, Verdict::kFailed);
    EXPECT_NE(o->error.find("--allow-test-variants"), std::string::npos) << o->error;
  }
  EXPECT_EQ(w.Measure(kKey, 3, 0.01)->verdict, Verdict::kOk);
  EXPECT_EQ(w.starts(), 1);
}

TEST_F(Watchdog, GarbageOnStdoutIsAProtocolFailure) {
  ::setenv("FAKE_GARBAGE_KEY", "junk", 1);
  WorkerClient w(Options());
  ASSERT_TRUE(w.Prepare(Prepare()).ok());
  absl::StatusOr<Outcome> o = w.Measure("junk", 3, 0.01);
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->verdict, Verdict::kFailed);
  EXPECT_NE(o->error.find("protocol"), std::string::npos);
  EXPECT_EQ(w.Measure(kKey, 3, 0.01)->verdict, Verdict::kOk);
}

TEST_F(Watchdog, WrongIsNotACrash) {
  WorkerClient w(Options());
  ASSERT_TRUE(w.Prepare(Prepare()).ok());
  const std::string wrong = "decode-bf16-d128-h16x8-contig-nowin.learned-plain.fma-n32-w1-s1-splitauto-g2";
  ASSERT_TRUE(testing::FakeWrong(wrong));
  absl::StatusOr<Outcome> o = w.Measure(wrong, 3, 0.01);
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->verdict, Verdict::kWrong);
  EXPECT_EQ(w.starts(), 1);
}

TEST_F(Watchdog, SilentWorkerFailsToStart) {
  WorkerOptions o = Options();
  o.argv = {"/bin/sh", "-c", "sleep 100"};
  o.ready_timeout_s = 0.5;
  WorkerClient w(o);
  const double t0 = Now();
  absl::Status s = w.Prepare(Prepare());
  EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
  EXPECT_LT(Now() - t0, 3.0);
  // A start-up failure is the worker's problem, not a candidate's: Measure says so.
  absl::StatusOr<Outcome> m = w.Measure(kKey, 3, 0.01);
  EXPECT_FALSE(m.ok());
}

TEST_F(Watchdog, MissingProgramAndEarlyExit) {
  WorkerOptions o = Options();
  o.argv = {"/nonexistent/parallax", "worker"};
  WorkerClient w(o);
  absl::Status s = w.Prepare(Prepare());
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("/nonexistent/parallax"), std::string::npos) << s;

  o.argv = {"/bin/sh", "-c", "echo 'no CUDA device' >&2; exit 1"};
  WorkerClient dead(o);
  s = dead.Prepare(Prepare());
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(s.message().find("no CUDA device"), std::string::npos) << s;
  EXPECT_NE(s.message().find("status 1"), std::string::npos) << s;
}

TEST_F(Watchdog, PrepareFailureIsReported) {
  WorkerClient w(Options());
  WorkerRequest p = Prepare();
  p.seqlen = 1 << 23;  // the fake says: too big for memory
  absl::Status s = w.Prepare(p);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("memory"), std::string::npos);
}

TEST_F(Watchdog, CancelStopsWaitingAndKillsTheWorker) {
  std::atomic<bool> cancel{false};
  WorkerOptions o = Options();
  o.min_timeout_s = 60;
  o.cancel = &cancel;
  WorkerClient w(o);
  ASSERT_TRUE(w.Prepare(Prepare()).ok());
  std::thread t([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    cancel = true;
  });
  const double t0 = Now();
  absl::StatusOr<Outcome> r = w.Measure(std::string(kKey) + "-testhang", 3, 1);
  t.join();
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->verdict, Verdict::kCancelled);
  EXPECT_LT(Now() - t0, 3.0);
}

TEST_F(Watchdog, StopQuitsPolitely) {
  auto w = std::make_unique<WorkerClient>(Options());
  ASSERT_TRUE(w->Prepare(Prepare()).ok());
  w->Stop();
  EXPECT_EQ(LogLines("quit").size(), 1u);
}

}  // namespace
}  // namespace parallax::search
