// A stand-in for `parallax worker` with no GPU: it speaks the protocol, answers times from
// FakeTimeUs, and misbehaves on demand so the watchdog can be tested on any machine:
//   key ending -testfault, or equal to $FAKE_CRASH_KEY: prints to stderr and aborts (like a
//     worker whose CUDA context died mid-kernel)
//   key ending -testhang, or equal to $FAKE_HANG_KEY: says "loaded", then never answers
//   (test-only keys only with --allow-test-variants, as `parallax worker`; else 'failed')
//   FakeWrong(key): answers 'wrong'
//   $FAKE_GARBAGE_KEY: prints a non-protocol line
// $FAKE_LOG: appends "<pid> <op> <key> <reps>" per request (tests count what was measured),
//   and "<pid> start <flag> 0" at start-up.
// $FAKE_NO_READY=1: never says ready (start-up watchdog).
// $FAKE_DELAY_MS=N: takes N ms over each measurement (so a run lasts long enough to be
//   interrupted part way: the fleet test).
// $FAKE_DELAY_TOKENS=T: ... times max(1, batch x seqlen / T) of the prepared bucket, so a
//   bigger bucket takes longer to tune, as on a GPU (the multi-GPU scheduling test).
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <thread>

#include "absl/strings/match.h"
#include "fake_times.h"
#include "parallax/codegen/variant.h"
#include "parallax/search/protocol.h"

using namespace parallax::search;

namespace {

void Send(const WorkerReply& r) {
  std::cout << Encode(r) << std::endl;  // endl: flush, the tuner is waiting
}

bool EnvIs(const char* name, const std::string& value) {
  const char* e = std::getenv(name);
  return e != nullptr && value == e;
}

void Log(const WorkerRequest& r) {
  const char* path = std::getenv("FAKE_LOG");
  if (path == nullptr) return;
  if (FILE* f = std::fopen(path, "a")) {
    const char* op = r.op == Op::kPrepare ? "prepare" : r.op == Op::kMeasure ? "measure" : "quit";
    const std::string& key = r.op == Op::kPrepare ? r.default_key : r.key;
    std::fprintf(f, "%d %s %s %d\n", static_cast<int>(::getpid()), op, key.empty() ? "-" : key.c_str(),
                 r.op == Op::kPrepare ? r.batch : r.reps);
    std::fclose(f);
  }
}

// "<pid> shape b<batch>-q<q_len>-k<seqlen> 0": the shape a prepare asked for.
void LogShape(const WorkerRequest& r) {
  const char* path = std::getenv("FAKE_LOG");
  if (path == nullptr) return;
  if (FILE* f = std::fopen(path, "a")) {
    std::fprintf(f, "%d shape b%d-q%d-k%d 0\n", static_cast<int>(::getpid()), r.batch, r.q_len, r.seqlen);
    std::fclose(f);
  }
}

// "<pid> start <--allow-test-variants or -> 0": how the tuner started this worker.
void LogStart(bool allow_test_variants) {
  const char* path = std::getenv("FAKE_LOG");
  if (path == nullptr) return;
  if (FILE* f = std::fopen(path, "a")) {
    std::fprintf(f, "%d start %s 0\n", static_cast<int>(::getpid()),
                 allow_test_variants ? "--allow-test-variants" : "-");
    std::fclose(f);
  }
}

}  // namespace

int main(int argc, char** argv) {
  bool allow_test_variants = false;
  for (int i = 1; i < argc; ++i)
    if (std::string(argv[i]) == "--allow-test-variants") allow_test_variants = true;
  LogStart(allow_test_variants);
  if (EnvIs("FAKE_NO_READY", "1")) {
    ::pause();
    return 0;
  }
  WorkerReply ready;
  ready.event = "ready";
  ready.info = {{"device", "fake"}, {"pid", ::getpid()}};
  Send(ready);
  bool prepared = false;
  double delay_factor = 1;  // of the prepared bucket
  std::string line;
  while (std::getline(std::cin, line)) {
    absl::StatusOr<WorkerRequest> req = DecodeRequest(line);
    if (!req.ok()) continue;
    Log(*req);
    WorkerReply r;
    r.id = req->id;
    if (req->op == Op::kQuit) return 0;
    if (req->op == Op::kPrepare) {
      LogShape(*req);
      if (const char* t = std::getenv("FAKE_DELAY_TOKENS"); t != nullptr && std::atof(t) > 0)
        delay_factor = std::max(1.0, double(req->batch) * req->seqlen / std::atof(t));
      // As the real worker's bench needs: a prefill or bwd default key (prefill buckets) comes
      // with its q_len, a decode one without.
      const bool prefill_shape = !absl::StartsWith(req->default_key, "decode-");
      prepared = prefill_shape == (req->q_len > 0);
      if (!prepared) {
        r.verdict = Verdict::kFailed;
        r.error = prefill_shape ? "prefill/bwd prepare without q_len" : "decode prepare with q_len";
      } else if (req->seqlen > (1 << 22)) {
        r.verdict = Verdict::kFailed;
        r.error = "one input set needs more memory than the device has";
      } else {
        r.verdict = Verdict::kOk;
      }
      Send(r);
      continue;
    }
    const std::string& key = req->key;
    if (!prepared) {
      r.verdict = Verdict::kFailed;
      r.error = "measure before prepare";
      Send(r);
      continue;
    }
    if (parallax::IsTestOnlyKey(key) && !allow_test_variants) {
      r.verdict = Verdict::kFailed;
      r.error = "test-only variant refused (the worker was not started with --allow-test-variants)";
      Send(r);
      continue;
    }
    if (absl::EndsWith(key, "-testfault") || EnvIs("FAKE_CRASH_KEY", key)) {
      std::fprintf(stderr, "fake worker: CUDA_ERROR_ILLEGAL_ADDRESS in %s\n", key.c_str());
      std::fflush(stderr);
      std::abort();
    }
    if (absl::EndsWith(key, "-testhang") || EnvIs("FAKE_HANG_KEY", key)) {
      WorkerReply loaded;
      loaded.id = req->id;
      loaded.event = "loaded";
      Send(loaded);
      while (true) ::pause();
    }
    if (EnvIs("FAKE_GARBAGE_KEY", key)) {
      std::cout << "this is not JSON" << std::endl;
      continue;
    }
    if (testing::FakeWrong(key)) {
      r.verdict = Verdict::kWrong;
      r.rel_error = 0.5;
      r.error = "reduced shape b2-l2048: rel. Frobenius error 0.5 exceeds 0.01";
      Send(r);
      continue;
    }
    if (const char* d = std::getenv("FAKE_DELAY_MS"); d != nullptr && std::atoi(d) > 0)
      std::this_thread::sleep_for(std::chrono::duration<double, std::milli>(std::atoi(d) * delay_factor));
    const double t = testing::FakeTimeUs(key);
    r.verdict = Verdict::kOk;
    r.median_us = t;
    r.min_us = t * 0.99;
    r.max_us = t * 1.02;
    r.reps = req->reps;
    r.rel_error = 1e-3;
    Send(r);
  }
  return 0;
}
