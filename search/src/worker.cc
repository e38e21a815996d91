#include "parallax/search/worker.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "parallax/runtime/runtime.h"
#include "bench_for.h"
#include "parallax/search/protocol.h"

namespace parallax::search {
namespace {

constexpr int kExitFatal = 3;

// Protocol lines go to a private copy of stdout; fd 1 itself is pointed at stderr so that
// anything else printing to stdout (a library, a kernel's printf) cannot corrupt them.
class Channel {
 public:
  Channel() {
    const int fd = ::dup(1);
    ::dup2(2, 1);
    out_ = ::fdopen(fd, "w");
  }
  ~Channel() {
    if (out_) std::fclose(out_);
  }
  void Send(const WorkerReply& r) {
    const std::string line = Encode(r) + "\n";
    std::fwrite(line.data(), 1, line.size(), out_);
    std::fflush(out_);
  }
  void Event(int64_t id, const char* what) {
    WorkerReply r;
    r.id = id;
    r.event = what;
    Send(r);
  }

 private:
  FILE* out_ = nullptr;
};

// A failure that may have left the context unusable: anything but bad arguments.
bool IsFatal(const absl::Status& s) { return s.code() != absl::StatusCode::kInvalidArgument; }

WorkerReply Failure(int64_t id, const absl::Status& s, bool fatal) {
  WorkerReply r;
  r.id = id;
  r.verdict = Verdict::kFailed;
  r.error = std::string(s.message());
  r.fatal = fatal;
  return r;
}

class Worker {
 public:
  Worker(Runtime& rt, Channel& ch, const WorkerMainOptions& o) : rt_(rt), ch_(ch), o_(o) {}

  // False when the worker must exit (a fatal error was reported).
  bool Handle(const WorkerRequest& req) {
    switch (req.op) {
      case Op::kPrepare: return Prepare(req);
      case Op::kMeasure: return Measure(req);
      case Op::kQuit: return false;
    }
    return true;
  }

 private:
  bool Prepare(const WorkerRequest& req) {
    bench_.reset();
    absl::StatusOr<Variant> def = Variant::Parse(req.default_key);
    if (!def.ok()) {
      ch_.Send(Failure(req.id, def.status(), false));
      return true;
    }
    // The default variant's mode picks the bench (decode, or prefill of q_len queries, or the
    // backward of that prefill).
    const BucketShape shape{req.batch, req.seqlen, std::max(1, req.q_len)};
    BenchOptions o;
    o.seed = req.seed;
    o.reference_key = req.default_key;
    absl::StatusOr<std::unique_ptr<Bench>> b = internal::MakeBench(rt_, def->problem(), def->algorithm(), shape, o);
    if (!b.ok()) {
      const bool fatal = IsFatal(b.status()) && b.status().code() != absl::StatusCode::kResourceExhausted;
      ch_.Send(Failure(req.id, b.status(), fatal));
      return !fatal;
    }
    bench_ = *std::move(b);
    problem_ = def->problem();
    algorithm_ = def->algorithm();
    WorkerReply r;
    r.id = req.id;
    r.verdict = Verdict::kOk;
    r.info = bench_->Info();
    ch_.Send(r);
    return true;
  }

  bool Measure(const WorkerRequest& req) {
    if (!bench_) {
      ch_.Send(Failure(req.id, absl::FailedPreconditionError("measure before prepare"), false));
      return true;
    }
    absl::StatusOr<Variant> v = MeasuredVariant(req.key, o_);
    if (!v.ok() || !(v->problem() == problem_) || !(v->algorithm() == algorithm_)) {
      ch_.Send(Failure(req.id, v.ok() ? absl::InvalidArgumentError("variant is for another problem") : v.status(),
                       false));
      return true;
    }
    if (absl::StatusOr<const LoadedKernel*> k = rt_.Load(*v); !k.ok()) {
      ch_.Send(Failure(req.id, k.status(), IsFatal(k.status())));
      return !IsFatal(k.status());
    }
    ch_.Event(req.id, "loaded");  // compiling (on a cache miss) does not count against the watchdog
    absl::StatusOr<VerifyResult> check = bench_->Verify(*v);
    if (!check.ok()) {
      ch_.Send(Failure(req.id, check.status(), IsFatal(check.status())));
      return !IsFatal(check.status());
    }
    WorkerReply r;
    r.id = req.id;
    const double worst = std::max(check->reduced_rel, check->full_rel);
    r.rel_error = std::isfinite(worst) ? worst : 1e30;  // JSON has no infinity
    if (!check->ok) {
      r.verdict = Verdict::kWrong;
      r.error = check->error;
      ch_.Send(r);
      return true;
    }
    ch_.Event(req.id, "verified");
    absl::StatusOr<Timing> t = bench_->Time(*v, req.reps);
    if (!t.ok()) {
      ch_.Send(Failure(req.id, t.status(), IsFatal(t.status())));
      return !IsFatal(t.status());
    }
    r.verdict = Verdict::kOk;
    r.median_us = t->median_us;
    r.min_us = t->min_us;
    r.max_us = t->max_us;
    r.reps = t->reps;
    r.info = {{"num_splits", t->num_splits}};
    ch_.Send(r);
    return true;
  }

  Runtime& rt_;
  Channel& ch_;
  const WorkerMainOptions& o_;
  std::unique_ptr<Bench> bench_;
  Problem problem_;
  Algorithm algorithm_;
};

}  // namespace

absl::StatusOr<Variant> MeasuredVariant(const std::string& key, const WorkerMainOptions& o) {
  absl::StatusOr<Variant> v = Variant::Parse(key, {.allow_test_faults = o.allow_test_variants});
  if (!v.ok() && IsTestOnlyKey(key) && !o.allow_test_variants)
    return absl::InvalidArgumentError(
        absl::StrCat(v.status().message(), " (the worker was not started with --allow-test-variants)"));
  return v;
}

int RunWorker(const WorkerMainOptions& o) {
  Channel ch;
  RuntimeOptions ro;
  ro.device = o.device;
  ro.cache_dir = o.cache_dir;
  absl::StatusOr<std::unique_ptr<Runtime>> rt = Runtime::Create(ro);
  if (!rt.ok()) {
    ch.Send(Failure(0, rt.status(), true));
    return 1;
  }
  if (absl::Status s = (*rt)->MakeCurrent(); !s.ok()) {
    ch.Send(Failure(0, s, true));
    return 1;
  }
  WorkerReply ready;
  ready.event = "ready";
  ready.info = {{"device", (*rt)->device().name},
                {"fingerprint", (*rt)->device().fingerprint()},
                {"ordinal", o.device},
                {"pid", ::getpid()}};
  ch.Send(ready);
  Worker w(**rt, ch, o);
  std::string line;
  while (std::getline(std::cin, line)) {
    if (line.empty()) continue;
    absl::StatusOr<WorkerRequest> req = DecodeRequest(line);
    if (!req.ok()) {
      ch.Send(Failure(-1, req.status(), false));
      continue;
    }
    if (req->op == Op::kQuit) return 0;
    // After a fatal error the context may be unusable: leave without tearing it down
    // (destructors could block on it); the driver reclaims everything at exit.
    if (!w.Handle(*req)) ::_exit(kExitFatal);
  }
  return 0;
}

}  // namespace parallax::search
