#include "unit_measurer.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace parallax::search::internal {

UnitMeasurer::UnitMeasurer(TuningDb& db, UnitKey unit, CompileQueue& compile, WorkerClient& worker,
                           ExpectedFn expected, int max_consecutive_crashes, const std::vector<Trial>& earlier,
                           ResultFn on_result)
    : db_(db), unit_(std::move(unit)), compile_(compile), worker_(worker), expected_(std::move(expected)),
      max_crashes_(max_consecutive_crashes), on_result_(std::move(on_result)) {
  for (const Trial& t : earlier) {
    auto [it, fresh] = judged_.emplace(t.key, t.outcome);
    if (!fresh && t.outcome.reps >= it->second.reps) it->second = t.outcome;
  }
  for (const auto& [key, o] : judged_)
    if (o.ok() && (fastest_.key.empty() || o.median_us < fastest_.outcome.median_us)) fastest_ = {key, o};
}

Outcome UnitMeasurer::Stop(absl::Status why) {
  if (infra_.ok()) infra_ = std::move(why);
  return Outcome::Bad(Verdict::kCancelled, std::string(infra_.message()));
}

void UnitMeasurer::Note(const std::string& key, const Outcome& o) {
  auto [it, fresh] = judged_.emplace(key, o);
  if (!fresh && o.reps >= it->second.reps) it->second = o;
  if (o.ok() && (fastest_.key.empty() || o.median_us < fastest_.outcome.median_us)) fastest_ = {key, o};
  if (on_result_) on_result_(key, o);
}

Outcome UnitMeasurer::Measure(const Variant& v, int reps) {
  if (!infra_.ok()) return Outcome::Bad(Verdict::kCancelled, std::string(infra_.message()));
  const std::string& key = v.Key();
  // Resume: a stored answer with enough samples, or a failure, is not measured again.
  if (auto it = judged_.find(key); it != judged_.end() && (!it->second.ok() || it->second.reps >= reps)) {
    Outcome o = it->second;
    o.cached = true;
    ++counts_.cached;
    if (on_result_) on_result_(key, o);
    return o;
  }
  const Clock& clock = SteadyClock();  // real time even when the budget runs on a test clock
  double t0 = clock.NowSeconds();
  const CompileOutcome c = compile_.Wait(v);
  times_.compile_wait_s += clock.NowSeconds() - t0;
  Outcome o;
  if (c.kind == CompileOutcome::Kind::kPruned) {
    o = Outcome::Bad(Verdict::kPruned, c.reason);
    ++counts_.pruned;
    judged_[key] = o;
    if (on_result_) on_result_(key, o);
    return o;
  }
  if (c.kind == CompileOutcome::Kind::kFailed) {
    o = Outcome::Bad(Verdict::kFailed, c.reason);
  } else {
    t0 = clock.NowSeconds();
    absl::StatusOr<Outcome> r = worker_.Measure(key, reps, expected_(v, reps));
    times_.measure_s += clock.NowSeconds() - t0;
    if (!r.ok()) return Stop(r.status());
    o = *std::move(r);
    if (o.verdict == Verdict::kCancelled) return o;
    // A worker that dies on every candidate is broken itself; stop blaming candidates.
    const bool crashed = o.verdict == Verdict::kFailed && absl::StartsWith(o.error, "worker ");
    crash_run_ = crashed ? crash_run_ + 1 : 0;
  }
  t0 = clock.NowSeconds();
  const absl::Status stored = db_.Record(unit_, key, o);
  times_.db_s += clock.NowSeconds() - t0;
  if (absl::Status s = stored; !s.ok())
    return Stop(absl::Status(s.code(), absl::StrCat("storing a measurement: ", s.message())));
  ++counts_.measured;
  counts_.failed += o.verdict == Verdict::kFailed;
  counts_.wrong += o.verdict == Verdict::kWrong;
  counts_.timeout += o.verdict == Verdict::kTimeout;
  Note(key, o);
  if (crash_run_ >= max_crashes_)
    return Stop(absl::UnavailableError(
        absl::StrCat("the worker died on ", crash_run_, " candidates in a row (last: ", o.error, ")")));
  return o;
}

}  // namespace parallax::search::internal
