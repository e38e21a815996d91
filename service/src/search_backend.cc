#include "parallax/service/search_backend.h"

#include <algorithm>
#include <map>
#include <mutex>
#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "parallax/search/tuning_db.h"

namespace parallax::service {
namespace {

search::StrategyKind KindOf(Strategy s) {
  switch (s) {
    case Strategy::kExhaustive: return search::StrategyKind::kExhaustive;
    case Strategy::kRandom: return search::StrategyKind::kRandom;
    case Strategy::kGuided: break;
  }
  return search::StrategyKind::kGuided;
}

// One search::Tune call: a problem key and its buckets, and which job problems it answers.
struct Group {
  search::TuneRequest request;
  std::vector<size_t> problems;  // indexes into JobSpec::problems
};

std::vector<Group> GroupByProblem(const JobSpec& spec) {
  std::vector<Group> groups;
  std::map<std::string, size_t> by_key;
  for (size_t i = 0; i < spec.problems.size(); ++i) {
    const ProblemSpec& p = spec.problems[i];
    auto [it, fresh] = by_key.try_emplace(p.problem_key, groups.size());
    if (fresh) groups.push_back({search::TuneRequest{p.problem, p.algorithm, {}}, {}});
    Group& g = groups[it->second];
    g.problems.push_back(i);
    const ShapeBucket& b = p.shape_bucket;
    if (std::find(g.request.buckets.begin(), g.request.buckets.end(), b) == g.request.buckets.end())
      g.request.buckets.push_back(b);
  }
  return groups;
}

// Folds the tuner's events (one group at a time) into the job's snapshots.
class JobProgress {
 public:
  JobProgress(const JobSpec& spec, const std::vector<Group>& groups, ProgressSink& sink)
      : spec_(spec), groups_(groups), sink_(sink), best_(spec.problems.size()) {
    for (const Group& g : groups) units_left_ += static_cast<int>(g.request.buckets.size());
  }

  void StartGroup(size_t g, double job_seconds_left) {
    std::lock_guard<std::mutex> l(mu_);
    group_ = g;
    job_left_s_ = job_seconds_left;
  }

  void OnEvent(const search::ProgressEvent& e) {
    std::lock_guard<std::mutex> l(mu_);
    Unit& u = units_[{group_, e.bucket}];
    switch (e.kind) {
      case search::ProgressEvent::Kind::kUnitStart:
        u.planned = e.planned;
        last_planned_ = e.planned;
        message_ = absl::StrFormat("%s %s: started (%d candidates)", Short(), e.bucket, e.candidates);
        break;
      case search::ProgressEvent::Kind::kMeasured:
        u.tried = std::max(u.tried, e.tried);
        message_ = absl::StrFormat("%s %s: %d/%d measured", Short(), e.bucket, e.tried, e.planned);
        if (!e.best_key.empty()) SetBest(e.bucket, e.best_key, e.best_us);
        break;
      case search::ProgressEvent::Kind::kUnitDone:
        u.tried = std::max(u.tried, e.tried);
        u.planned = u.tried;  // whatever it planned, this is what it took
        u.done = true;
        --units_left_;
        if (!e.best_key.empty()) SetBest(e.bucket, e.best_key, e.best_us);  // the stored best
        message_ = e.message.empty() ? absl::StrFormat("%s %s: done", Short(), e.bucket)
                                     : absl::StrFormat("%s %s: %s", Short(), e.bucket, e.message);
        break;
      case search::ProgressEvent::Kind::kMessage:
        if (!e.message.empty()) message_ = e.message;
        break;
    }
    eta_s_ = e.eta_s;
    SendLocked();
  }

  void Send() {
    std::lock_guard<std::mutex> l(mu_);
    SendLocked();
  }

 private:
  struct Unit {
    int planned = 0, tried = 0;
    bool done = false;
  };

  std::string Short() const { return spec_.problems[groups_[group_].problems.front()].problem_key; }

  void SetBest(const std::string& bucket, const std::string& key, double us) {
    for (size_t i : groups_[group_].problems)
      if (spec_.problems[i].bucket == bucket) best_[i] = {key, us};
  }

  void SendLocked() {
    ProgressUpdate u;
    int64_t known = 0;
    int unknown = units_left_;
    for (const auto& [where, unit] : units_) {
      u.variants_tried += unit.tried;
      known += std::max(unit.planned, unit.tried);
      if (!unit.done) --unknown;  // started: its plan is known
    }
    // Units not started yet are guessed like the last one planned; unknown before any.
    u.variants_total = last_planned_ > 0 ? known + int64_t(std::max(0, unknown)) * last_planned_ : 0;
    u.best = best_;
    u.eta_seconds = eta_s_;
    if (job_left_s_ > 0) u.eta_seconds = eta_s_ < 0 ? job_left_s_ : std::min(job_left_s_, eta_s_);
    u.message = message_;
    sink_.Update(u);
  }

  const JobSpec& spec_;
  const std::vector<Group>& groups_;
  ProgressSink& sink_;
  std::mutex mu_;
  size_t group_ = 0;
  double job_left_s_ = 0;
  std::map<std::pair<size_t, std::string>, Unit> units_;
  int units_left_ = 0;
  int last_planned_ = 0;
  double eta_s_ = -1;
  std::string message_;
  std::vector<ProblemBestSoFar> best_;
};

}  // namespace

SearchBackend::SearchBackend(SearchBackendOptions options, std::vector<DeviceInfo> devices)
    : o_(std::move(options)), devices_(std::move(devices)) {}

absl::StatusOr<std::unique_ptr<SearchBackend>> SearchBackend::Create(SearchBackendOptions options) {
  if (options.db_path.empty()) return absl::InvalidArgumentError("search backend: no database path");
  if (options.worker_argv.empty()) return absl::InvalidArgumentError("search backend: no worker command");
  std::vector<DeviceInfo> devices = options.deps.devices;
  if (devices.empty()) {
    absl::StatusOr<std::vector<DeviceInfo>> found = search::VisibleDevices();
    if (!found.ok()) return found.status();
    devices = *std::move(found);
  }
  return std::unique_ptr<SearchBackend>(new SearchBackend(std::move(options), std::move(devices)));
}

absl::StatusOr<cache::DeviceInfo> SearchBackend::device(int ordinal) {
  if (ordinal < 0 || ordinal >= device_count())
    return absl::NotFoundError(absl::StrCat("device ", ordinal, ": this server has ", device_count(), " GPU(s)"));
  return search::ToCacheDevice(devices_[ordinal]);
}

// Decode and prefill alike (the worker picks the bench by the problem's mode, the bucket
// kind follows the mode: ValidateProblem); what ValidateProblem accepts can be tuned.
absl::Status SearchBackend::CanTune(const ProblemSpec&) { return absl::OkStatus(); }

absl::Status SearchBackend::RunJob(const JobSpec& spec, ProgressSink& sink, const std::atomic<bool>& cancel) {
  if (spec.device_ordinal < 0 || spec.device_ordinal >= device_count())
    return absl::InvalidArgumentError(absl::StrCat("device ", spec.device_ordinal, ": no such GPU"));
  for (const ProblemSpec& p : spec.problems)
    if (absl::Status s = CanTune(p); !s.ok()) return s;
  const std::vector<Group> groups = GroupByProblem(spec);
  JobProgress progress(spec, groups, sink);
  const auto start = std::chrono::steady_clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };

  std::vector<std::string> errors;
  int tuned = 0;
  for (size_t g = 0; g < groups.size() && !cancel; ++g) {
    const double left = spec.budget_seconds - elapsed();
    if (left <= 0) break;
    progress.StartGroup(g, left);
    search::TuneOptions to;
    to.db_path = o_.db_path;
    to.strategy.kind = KindOf(spec.strategy);
    to.budget_s = left / double(groups.size() - g);  // time a group leaves unused flows on
    to.space = o_.space;
    to.cache_dir = o_.cache_dir;
    to.compile_threads = o_.compile_threads;
    to.worker_argv = o_.worker_argv;
    to.min_timeout_s = o_.min_timeout_s;
    to.cancel = &cancel;
    to.run_id = spec.job_id;
    to.command = {{"service_job", spec.job_id}};
    to.progress = [&progress](const search::ProgressEvent& e) { progress.OnEvent(e); };
    search::TuneDeps deps = o_.deps;
    deps.devices = {devices_[spec.device_ordinal]};
    spdlog::info("job {}: tuning {} over {} bucket(s), {:.0f} s", spec.job_id,
                 spec.problems[groups[g].problems.front()].problem_key, groups[g].request.buckets.size(), to.budget_s);
    absl::StatusOr<search::TuneReport> r = search::Tune(groups[g].request, to, deps);
    if (!r.ok()) {
      errors.push_back(std::string(r.status().message()));
      continue;
    }
    for (const search::UnitReport& u : r->units) {
      if (!u.best_key.empty()) ++tuned;
      if (!u.error.empty()) errors.push_back(absl::StrCat(u.bucket, ": ", u.error));
    }
  }
  progress.Send();
  if (cancel) return absl::CancelledError("cancelled");
  if (tuned == 0)
    return absl::InternalError(errors.empty() ? std::string("no bucket was tuned (budget too small?)")
                                              : absl::StrCat("no bucket was tuned: ", errors.front()));
  if (!errors.empty()) spdlog::warn("job {}: {} bucket error(s), first: {}", spec.job_id, errors.size(), errors.front());
  return absl::OkStatus();
}

}  // namespace parallax::service
