#include "parallax/search/worker_client.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "parallax/search/clock.h"

namespace parallax::search {
namespace {

double NowSeconds() { return SteadyClock().NowSeconds(); }

// The last non-empty stderr lines: where a crashing worker says why.
std::string LastLines(const std::string& text, size_t n) {
  std::vector<std::string> lines;
  for (absl::string_view l : absl::StrSplit(text, '\n'))
    if (!absl::StripAsciiWhitespace(l).empty()) lines.emplace_back(absl::StripAsciiWhitespace(l));
  if (lines.size() > n) lines.erase(lines.begin(), lines.end() - n);
  std::string out;
  for (const std::string& l : lines) absl::StrAppend(&out, out.empty() ? "" : " | ", l);
  return out;
}

}  // namespace

double WorkerClient::TimeoutFor(double expected_s) const {
  return std::max(o_.min_timeout_s, o_.timeout_factor * expected_s);
}

void WorkerClient::Discard() {
  if (proc_) proc_->Kill();
  proc_.reset();
}

std::string WorkerClient::DeathNote() {
  if (!proc_) return "no worker";
  proc_->Reap(2.0);
  std::string note = absl::StrCat("worker ", proc_->ExitDescription());
  if (std::string tail = LastLines(proc_->stderr_tail(), 3); !tail.empty()) absl::StrAppend(&note, ": ", tail);
  return note;
}

std::variant<WorkerReply, Outcome> WorkerClient::Call(const WorkerRequest& r, double timeout_s) {
  if (absl::Status s = proc_->WriteLine(Encode(r)); !s.ok()) {
    Outcome o = Outcome::Bad(Verdict::kFailed, DeathNote());
    Discard();
    return o;
  }
  while (true) {
    std::string line;
    switch (proc_->ReadLine(timeout_s, &line, o_.cancel)) {
      case Subprocess::Read::kLine: {
        absl::StatusOr<WorkerReply> reply = DecodeReply(line);
        if (!reply.ok()) {  // stray output: the worker is not speaking the protocol
          Outcome o = Outcome::Bad(Verdict::kFailed, absl::StrCat("worker protocol error: ", reply.status().message()));
          Discard();
          return o;
        }
        if (reply->id != r.id) continue;     // a late answer to an abandoned request
        if (reply->is_event()) continue;      // heartbeat: the timeout starts again
        if (reply->fatal) proc_->Reap(5.0);   // it exits after a fatal answer
        return *std::move(reply);
      }
      case Subprocess::Read::kTimeout: {
        Discard();
        return Outcome::Bad(Verdict::kTimeout,
                            absl::StrCat("no answer within ", timeout_s, " s; worker killed"));
      }
      case Subprocess::Read::kEof: {
        Outcome o = Outcome::Bad(Verdict::kFailed, DeathNote());
        Discard();
        return o;
      }
      case Subprocess::Read::kCancelled: {
        Discard();
        return Outcome::Bad(Verdict::kCancelled, "cancelled");
      }
    }
  }
}

absl::Status WorkerClient::EnsureStarted() {
  if (proc_ && !proc_->Reap(0)) return absl::OkStatus();
  Discard();
  const double t0 = NowSeconds();
  absl::StatusOr<std::unique_ptr<Subprocess>> p = Subprocess::Spawn(o_.argv);
  if (!p.ok()) return p.status();
  proc_ = std::move(*p);
  ++starts_;
  std::string line;
  while (true) {  // the "ready" line, skipping nothing else: the worker speaks first
    switch (proc_->ReadLine(o_.ready_timeout_s, &line, o_.cancel)) {
      case Subprocess::Read::kLine: break;
      case Subprocess::Read::kTimeout: Discard(); return absl::DeadlineExceededError("the worker did not start in time");
      case Subprocess::Read::kCancelled: Discard(); return absl::CancelledError("cancelled");
      case Subprocess::Read::kEof: {
        std::string note = DeathNote();
        Discard();
        return absl::UnavailableError(absl::StrCat("the worker failed to start: ", note));
      }
    }
    absl::StatusOr<WorkerReply> ready = DecodeReply(line);
    if (!ready.ok()) {
      Discard();
      return absl::UnavailableError(absl::StrCat("the worker failed to start: ", ready.status().message()));
    }
    if (ready->is_event() && ready->event == "ready") {
      info_ = ready->info;
      start_s_ += NowSeconds() - t0;
      break;
    }
    if (!ready->is_event()) {  // a start-up failure, e.g. no CUDA device
      std::string why = ready->error;
      Discard();
      return absl::UnavailableError(absl::StrCat("the worker failed to start: ", why));
    }
  }
  return prepare_ ? SendPrepare() : absl::OkStatus();
}

absl::Status WorkerClient::SendPrepare() {
  struct Timed {  // every return below counts
    double& total;
    double t0 = NowSeconds();
    ~Timed() { total += NowSeconds() - t0; }
  } timed{prepare_s_};
  WorkerRequest r = *prepare_;
  r.id = next_id_++;
  auto answer = Call(r, o_.prepare_timeout_s);
  if (Outcome* o = std::get_if<Outcome>(&answer)) {
    if (o->verdict == Verdict::kCancelled) return absl::CancelledError("cancelled");
    return absl::UnavailableError(absl::StrCat("preparing the inputs failed: ", o->error));
  }
  const WorkerReply& reply = std::get<WorkerReply>(answer);
  if (reply.verdict != Verdict::kOk) {
    Discard();
    return absl::FailedPreconditionError(absl::StrCat("preparing the inputs failed: ", reply.error));
  }
  info_["prepare"] = reply.info;
  return absl::OkStatus();
}

absl::Status WorkerClient::Start() { return EnsureStarted(); }

absl::Status WorkerClient::Prepare(const WorkerRequest& prepare) {
  prepare_ = prepare;
  prepare_->op = Op::kPrepare;
  // A running worker is re-prepared in place (the worker drops the last bucket's inputs
  // first): a fresh process per bucket cost a driver start, a context and the kernels'
  // loads every bucket. A new one is prepared by EnsureStarted.
  if (proc_ && !proc_->Reap(0)) {
    absl::Status s = SendPrepare();
    if (s.ok() || absl::IsCancelled(s)) return s;
    // Once more in a fresh process before the bucket is given up: what the last bucket left
    // behind in the old one must not cost this one.
  }
  return EnsureStarted();
}

absl::StatusOr<Outcome> WorkerClient::Measure(const std::string& key, int reps, double expected_s) {
  if (absl::Status s = EnsureStarted(); !s.ok()) return s;
  WorkerRequest r;
  r.op = Op::kMeasure;
  r.id = next_id_++;
  r.key = key;
  r.reps = reps;
  auto answer = Call(r, TimeoutFor(expected_s));
  if (Outcome* o = std::get_if<Outcome>(&answer)) return *o;
  WorkerReply& reply = std::get<WorkerReply>(answer);
  if (reply.fatal) Discard();
  return reply.ToOutcome();
}

void WorkerClient::Stop() {
  if (!proc_) return;
  if (!proc_->Reap(0)) {
    WorkerRequest q;
    q.op = Op::kQuit;
    q.id = next_id_++;
    if (proc_->WriteLine(Encode(q)).ok()) proc_->Reap(2.0);
  }
  Discard();
}

}  // namespace parallax::search
