#include "parallax/search/tuner.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "parallax/runtime/cuda_driver.h"
#include "parallax/runtime/runtime.h"
#include "parallax/search/cost_model.h"
#include "parallax/search/shard.h"
#include "parallax/cache/run_lock.h"
#include "parallax/codegen/kernel_family.h"
#include "parallax/search/tuning_db.h"
#include "parallax/search/worker_client.h"
#include "bench_for.h"
#include "unit_measurer.h"

namespace parallax::search {
namespace {

using internal::UnitMeasurer;

// Warm-start keys per unit: from this GPU model's nearest tuned bucket and the nearest other
// GPU model's (warm_start.h).
constexpr int kWarmStartSeeds = 4;

}  // namespace

absl::StatusOr<std::vector<DeviceInfo>> VisibleDevices() {
  absl::StatusOr<const cu::Api*> api = cu::Driver();
  if (!api.ok())
    return absl::FailedPreconditionError(
        absl::StrCat("tuning measures kernels on a GPU and none is usable here (", api.status().message(), ")"));
  int count = 0;
  if ((*api)->cuDeviceGetCount(&count) != CUDA_SUCCESS || count < 1)
    return absl::FailedPreconditionError("tuning measures kernels on a GPU and none is visible");
  std::vector<DeviceInfo> out;
  for (int i = 0; i < count; ++i) {
    absl::StatusOr<DeviceInfo> d = QueryDevice(i);
    if (!d.ok()) return absl::FailedPreconditionError(absl::StrCat("GPU ", i, ": ", d.status().message()));
    out.push_back(*d);
  }
  return out;
}

namespace {

// GPUs with one fingerprint share a space, a compile queue and a list of buckets; each
// bucket is tuned on one of them (timings from different GPU models are not comparable).
struct Group {
  std::string fingerprint;
  std::vector<int> devices;  // indexes into the device list
  CompileTarget target;
  CostInputs cost;
  std::vector<Variant> space;
  std::set<std::string> space_keys;  // warm-start seeds must be among them
  // The runtime's default on these GPUs when it is in the space (else the portable default):
  // measured first, raced as the baseline, and what default_us reports.
  std::string baseline_key;
  std::unique_ptr<CompileQueue> compile;
  size_t next_unit = 0;  // into Tuning::order_, under Shared::mu
  // Each bucket's warm-start seeds, picked at set-up from what the databases held then: a
  // bucket's seeds must not depend on which buckets of this run another GPU happened to
  // finish first, or the winners would depend on the number of GPUs (by request index).
  std::vector<absl::StatusOr<WarmStartPick>> warm;
};

// Real seconds for the timing report, whatever clock the budget runs on.
double Now() { return SteadyClock().NowSeconds(); }

struct Shared {
  std::mutex mu;
  int units_total = 0, units_started = 0, units_done = 0;
  long tried = 0, planned = 0;
  std::vector<UnitReport> units;
  std::vector<int64_t> run_ids;
  bool budget_exhausted = false;
};

class Tuning {
 public:
  Tuning(const TuneRequest& req, const TuneOptions& o, const Clock& clock, TuningDb& db, const WarmStart& warm,
         std::vector<DeviceInfo> devices)
      : req_(req), o_(o), db_(db), warm_(warm), devices_(std::move(devices)),
        budget_(clock, o.budget_s, o.cancel), default_key_(DefaultVariantKey(req.problem, req.algorithm)),
        created_(Now()) {}

  absl::Status Setup(const TuneDeps& deps) {
    double t0 = Now();
    absl::StatusOr<int64_t> pid = db_.ProblemId(req_.problem, req_.algorithm);
    setup_db_s_ += Now() - t0;
    if (!pid.ok()) return pid.status();
    problem_id_ = *pid;
    order_ = LongestFirst(req_);
    // The workers spin on their GPUs' completions and prepare inputs on the CPU: one core
    // each is theirs, the rest compile (at least one thread).
    const int hw = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    const int compile_threads =
        o_.compile_threads > 0 ? o_.compile_threads : std::max(1, hw - static_cast<int>(devices_.size()));
    std::map<std::string, Group*> by_fp;
    for (size_t i = 0; i < devices_.size(); ++i) {
      const std::string fp = devices_[i].fingerprint();
      Group*& g = by_fp[fp];
      if (g == nullptr) {
        groups_.push_back(std::make_unique<Group>());
        g = groups_.back().get();
        g->fingerprint = fp;
        g->target = TargetFor(devices_[i], o_.cache_dir);
        g->cost = CostInputsFor(devices_[i]);
        StaticSpace space = BuildStaticSpace(req_.problem, req_.algorithm, g->target.limits, o_.space);
        g->space = std::move(space.variants);
        for (const Variant& v : g->space) g->space_keys.insert(v.Key());
        for (const std::string& why : space.skipped) {  // explicit paths this GPU does not run
          std::lock_guard<std::mutex> l(shared_.mu);
          ProgressEvent e;
          e.kind = ProgressEvent::Kind::kMessage;
          e.device = devices_[i].ordinal;
          e.message = absl::StrCat("gpu", devices_[i].ordinal, ": left out ", why);
          Emit(e);
        }
        g->baseline_key = default_key_;
        const std::string own =
            DefaultVariantKey(req_.problem, req_.algorithm, devices_[i].cc_major * 10 + devices_[i].cc_minor);
        if (own != default_key_ &&
            std::any_of(g->space.begin(), g->space.end(), [&](const Variant& v) { return v.Key() == own; }))
          g->baseline_key = own;
        CompileFn fn = deps.make_compile ? deps.make_compile(g->target) : NvrtcCompileFn(g->target);
        g->compile = std::make_unique<CompileQueue>(std::move(fn), compile_threads);
        t0 = Now();
        for (const ShapeBucket& b : req_.buckets)
          g->warm.push_back(warm_.Pick(ToCacheDevice(devices_[i]), ProblemKey(req_.problem, req_.algorithm),
                                       ToString(b), kGeneratorVersion, SeedCheckFor(*g, devices_[i]),
                                       kWarmStartSeeds));
        setup_db_s_ += Now() - t0;
        shared_.units_total += static_cast<int>(req_.buckets.size());
        StrategyOptions so = o_.strategy;
        so.seeds.assign(1 + kWarmStartSeeds, "");
        so.baseline = g->baseline_key;
        shared_.planned += long(req_.buckets.size()) * PlannedMeasurements(so, g->space.size());
      }
      g->devices.push_back(static_cast<int>(i));
    }
    return absl::OkStatus();
  }

  void Run() {
    run_start_ = Now();
    timing_.assign(devices_.size(), WorkerTiming{});
    ended_.assign(devices_.size(), run_start_);
    std::vector<std::thread> threads;
    for (auto& g : groups_)
      for (int d : g->devices) threads.emplace_back([this, gp = g.get(), d] { DeviceLoop(*gp, d); });
    for (std::thread& t : threads) t.join();
    run_end_ = Now();
  }

  TuneReport Report() {
    TuneReport r;
    r.problem_key = ProblemKey(req_.problem, req_.algorithm);
    r.units = shared_.units;
    std::sort(r.units.begin(), r.units.end(), [](const UnitReport& a, const UnitReport& b) {
      return std::make_pair(a.fingerprint, a.bucket) < std::make_pair(b.fingerprint, b.bucket);
    });
    r.cancelled = budget_.Cancelled();
    r.budget_exhausted = shared_.budget_exhausted;
    r.wall_s = budget_.Elapsed();
    r.run_ids = shared_.run_ids;
    for (auto& g : groups_) {
      const CompileQueue::Stats s = g->compile->stats();
      r.compile.classes += s.classes;
      r.compile.done += s.done;
      r.compile.cached += s.cached;
      r.compile.pruned += s.pruned;
      r.compile.failed += s.failed;
      r.compile.threads += s.threads;
      r.compile.inline_runs += s.inline_runs;
      r.compile.cpu_s += s.cpu_s;
      r.compile.busy_s += s.busy_s;
      r.compile.wall_s = std::max(r.compile.wall_s, s.wall_s);  // the queues run side by side
    }
    TuneTiming& t = r.timing;
    t.wall_s = run_end_ - created_;
    t.setup_s = run_start_ - created_;
    t.order = "longest-first";
    t.compile = r.compile;
    t.db_s = setup_db_s_;
    for (size_t d = 0; d < devices_.size(); ++d) {
      WorkerTiming w = timing_[d];
      w.idle_end_s = std::max(0.0, run_end_ - ended_[d]);
      t.db_s += w.db_s;
      t.workers.push_back(w);
    }
    return r;
  }

 private:
  void Emit(ProgressEvent e) {  // caller holds shared_.mu
    if (!o_.progress) return;
    e.units = shared_.units_total;
    e.elapsed_s = budget_.Elapsed();
    const long left = std::max(0L, shared_.planned - shared_.tried);
    if (shared_.tried > 0) e.eta_s = e.elapsed_s * left / shared_.tried;
    if (!budget_.unlimited()) e.eta_s = e.eta_s < 0 ? budget_.Remaining() : std::min(e.eta_s, budget_.Remaining());
    o_.progress(e);
  }

  void Message(const DeviceInfo& dev, const std::string& text) {
    std::lock_guard<std::mutex> l(shared_.mu);
    ProgressEvent e;
    e.kind = ProgressEvent::Kind::kMessage;
    e.device = dev.ordinal;
    e.message = absl::StrCat("gpu", dev.ordinal, " ", text);
    Emit(e);
  }

  // Why a warm-start key is not a candidate of this group's units (nullopt: it is one).
  SeedCheck SeedCheckFor(const Group& g, const DeviceInfo& dev) const {
    return [this, &g, arch = dev.arch()](const std::string& key) -> std::optional<std::string> {
      if (g.space_keys.count(key)) return std::nullopt;
      absl::StatusOr<Variant> v = Variant::Parse(key);
      if (!v.ok()) return std::string("not a variant key");
      if (!(v->problem() == req_.problem) || !(v->algorithm() == req_.algorithm))
        return std::string("a variant of another problem");
      if (std::optional<std::string> why = NotOnDeviceReason(FamilyOf(*v), arch)) return why;
      return std::string("not in the space searched here (paths, split counts, fused merge, this GPU's limits)");
    };
  }

  // Seconds one measurement should take (the watchdog allows timeout_factor times this).
  double ExpectedSeconds(const Group& g, const ShapeBucket& b, const Variant& v, int reps) const {
    const double est = EstimateUs(v, b, g.cost);
    const DeviceInfo& dev = devices_[g.devices.front()];
    const double set_bytes = internal::BenchSetBytes(req_.problem, req_.algorithm, ShapeOf(b));
    const int sets = std::max(1, InputSetsFor(set_bytes, dev.l2_bytes, double(dev.mem_bytes), {}));
    const BenchOptions bo;
    // verification (3 launches), warm-up (each set), then (reps + 2) samples of >= min_sample_us
    const double us = 3 * est + bo.warmup * sets * est + (reps + 2) * std::max(bo.min_sample_us, est * sets);
    return 0.05 + us * 1e-6;
  }

  void DeviceLoop(Group& g, int d) {
    const DeviceInfo& dev = devices_[d];
    const double loop_start = Now();
    WorkerTiming& timing = timing_[d];  // this thread's alone until Run() joins it
    timing.device = dev.ordinal;
    double t0 = Now();
    absl::StatusOr<int64_t> device_id = db_.DeviceId(dev);
    std::optional<int64_t> run_id = o_.run_id;
    if (device_id.ok() && !o_.run_id) {
      nlohmann::json params = o_.command;
      params["problem_key"] = ProblemKey(req_.problem, req_.algorithm);
      params["strategy"] = ToString(o_.strategy.kind);
      params["budget_s"] = o_.budget_s;
      params["seed"] = o_.strategy.seed;
      params["device_ordinal"] = dev.ordinal;
      params["generator_version"] = kGeneratorVersion;
      params["buckets"] = nlohmann::json::array();
      for (const ShapeBucket& b : req_.buckets) params["buckets"].push_back(ToString(b));
      if (!o_.seed_dbs.empty()) params["seed_dbs"] = o_.seed_dbs;
      if (absl::StatusOr<int64_t> r = db_.store().StartRun(*device_id, params); r.ok()) run_id = *r;
    }
    timing.db_s += Now() - t0;
    WorkerOptions wo;
    wo.argv = o_.worker_argv;
    for (const std::string& a : {std::string("--device"), std::to_string(dev.ordinal), std::string("--cache-dir"),
                                 g.target.cache_dir})
      wo.argv.push_back(a);
    // Only a worker that is to measure planted test-only keys may accept them at all.
    if (std::any_of(o_.extra_candidates.begin(), o_.extra_candidates.end(),
                    [](const std::string& k) { return IsTestOnlyKey(k); }))
      wo.argv.push_back("--allow-test-variants");
    wo.min_timeout_s = o_.min_timeout_s;
    wo.timeout_factor = o_.timeout_factor;
    wo.prepare_timeout_s = o_.prepare_timeout_s;
    wo.cancel = o_.cancel;
    WorkerClient worker(wo);
    int done = 0, failed = 0;
    nlohmann::json progress;  // the run record's, last written
    while (true) {
      size_t index, position;
      int unit_no;
      double share;
      {
        std::lock_guard<std::mutex> l(shared_.mu);
        if (g.next_unit >= req_.buckets.size() || budget_.Cancelled()) break;
        position = g.next_unit++;
        index = order_[position];
        unit_no = ++shared_.units_started;
        // An equal share of what is left for each bucket not yet started, so the early ones
        // cannot starve the late ones; time they leave unused flows on.
        const double left = double(req_.buckets.size() - position) / g.devices.size();
        share = budget_.unlimited() ? 0 : budget_.Remaining() / std::max(1.0, left);
      }
      UnitReport ur = device_id.ok() ? RunUnit(g, d, *device_id, run_id, index, unit_no, share, worker, timing)
                                     : UnitReport{};
      ++timing.units;
      if (!device_id.ok()) ur.error = std::string(device_id.status().message());
      ++done;
      failed += !ur.error.empty();
      std::lock_guard<std::mutex> l(shared_.mu);
      ++shared_.units_done;
      shared_.budget_exhausted = shared_.budget_exhausted || ur.budget_exhausted;
      shared_.units.push_back(ur);
      if (run_id && !o_.run_id) {
        progress = {{"units_total", req_.buckets.size()}, {"units_done", done}, {"buckets", {}}};
        for (const UnitReport& u : shared_.units)
          if (u.device == dev.ordinal) {
            nlohmann::json& b = progress["buckets"][u.bucket];
            b = {{"best", u.best_key}, {"best_us", u.best_us}, {"measured", u.measured}, {"cached", u.cached},
                 {"error", u.error}};
            if (!u.warm_start.empty() || u.warm_start.dropped > 0) b["warm_start"] = ToJson(u.warm_start);
          }
        t0 = Now();
        (void)db_.store().UpdateRunProgress(*run_id, progress);
        timing.db_s += Now() - t0;
      }
    }
    worker.Stop();
    timing.starts = worker.starts();
    timing.start_s = worker.start_seconds();
    timing.prepare_s = worker.prepare_seconds();
    timing.wall_s = Now() - loop_start;
    ended_[d] = Now();
    if (run_id) {
      std::lock_guard<std::mutex> l(shared_.mu);
      shared_.run_ids.push_back(*run_id);
      if (o_.run_id) return;  // the caller's run: it records the outcome
      const cache::RunStatus status = budget_.Cancelled()              ? cache::RunStatus::kCancelled
                                      : (done > 0 && failed == done) ? cache::RunStatus::kFailed
                                                                       : cache::RunStatus::kDone;
      // The record keeps where this GPU's time went (the run's tail is only known at the end).
      if (progress.is_object()) {
        progress["timing"] = ToJson(timing);
        progress["timing"].erase("idle_end_s");
        (void)db_.store().UpdateRunProgress(*run_id, progress);
      }
      (void)db_.store().FinishRun(*run_id, status);
    }
  }

  UnitReport RunUnit(Group& g, int d, int64_t device_id, std::optional<int64_t> run_id, size_t index, int unit_no,
                     double share, WorkerClient& worker, WorkerTiming& timing) {
    const DeviceInfo& dev = devices_[d];
    const ShapeBucket& b = req_.buckets[index];
    UnitReport ur;
    ur.device = dev.ordinal;
    ur.fingerprint = g.fingerprint;
    ur.bucket = ToString(b);
    ur.candidates = static_cast<int>(g.space.size());
    UnitKey u{device_id, g.fingerprint, problem_id_, ProblemKey(req_.problem, req_.algorithm), ur.bucket,
              NvrtcVersionNumber(dev.nvrtc_version), run_id};
    double t0 = Now();
    absl::StatusOr<std::vector<Trial>> earlier = db_.Earlier(u);
    timing.db_s += Now() - t0;
    if (!earlier.ok()) {
      ur.error = std::string(earlier.status().message());
      return ur;
    }
    StrategyOptions so = o_.strategy;
    so.seeds = {g.baseline_key};
    so.baseline = g.baseline_key;
    std::string warm_note;  // said after the unit's start line
    if (const absl::StatusOr<WarmStartPick>& w = g.warm[index]; w.ok()) {
      ur.warm_start = *w;
      so.seeds.insert(so.seeds.end(), ur.warm_start.seeds.begin(), ur.warm_start.seeds.end());
      // Said when seeds come from other GPU models or seed databases, or some were dropped
      // (this GPU model's own neighbour buckets, the older rule, go without a word).
      if (ur.warm_start.dropped > 0 ||
          std::any_of(ur.warm_start.origins.begin(), ur.warm_start.origins.end(),
                      [](const SeedOrigin& o) { return !o.source.same_device || o.source.db_index > 0; }))
        warm_note = Describe(ur.warm_start);
    } else {  // a cold start, not a failed unit
      warm_note = absl::StrCat("no warm start (", w.status().message(), ")");
    }
    std::vector<Candidate> cands;
    for (const Variant& v : g.space) cands.push_back({v, EstimateUs(v, b, g.cost)});
    size_t after_default = 1;  // extra candidates go right after the reference, in order
    for (const std::string& k : o_.extra_candidates) {
      absl::StatusOr<Variant> v = Variant::Parse(k, {.allow_test_faults = o_.allow_test_variants});
      if (!v.ok() || !(v->problem() == req_.problem) || !(v->algorithm() == req_.algorithm)) continue;
      cands.push_back({*v, EstimateUs(*v, b, g.cost)});
      so.seeds.insert(so.seeds.begin() + after_default++, k);
    }
    // Compile in the order the strategy is likely to ask (guided: seeds, then cheapest first).
    std::vector<Variant> order;
    for (const std::string& s : so.seeds)
      for (const Candidate& c : cands)
        if (c.variant.Key() == s) order.push_back(c.variant);
    std::vector<Candidate> sorted = cands;
    if (so.kind == StrategyKind::kGuided)
      std::stable_sort(sorted.begin(), sorted.end(), [](const Candidate& x, const Candidate& y) { return x.est_us < y.est_us; });
    for (const Candidate& c : sorted) order.push_back(c.variant);
    g.compile->Schedule(order);

    const Budget slice = budget_.Slice(share);
    {
      std::lock_guard<std::mutex> l(shared_.mu);
      ProgressEvent e;
      e.kind = ProgressEvent::Kind::kUnitStart;
      e.device = dev.ordinal;
      e.bucket = ur.bucket;
      e.unit = unit_no;
      e.candidates = ur.candidates;
      e.planned = PlannedMeasurements(so, cands.size());
      Emit(e);
    }
    if (!warm_note.empty()) Message(dev, absl::StrCat(ur.bucket, ": ", warm_note));
    std::optional<UnitMeasurer> m;
    if (slice.Exhausted()) {
      ur.budget_exhausted = !slice.Cancelled();
    } else {
      // The reference variant must be ready before the worker's inputs are prepared; the
      // worker process starts (driver, context: the first unit only) while it compiles.
      absl::StatusOr<Variant> def = Variant::Parse(default_key_);
      if (def.ok()) g.compile->Schedule({*def});
      absl::Status started = worker.Start();
      t0 = Now();
      if (def.ok()) g.compile->Wait(*def);
      timing.compile_wait_s += Now() - t0;
      WorkerRequest prep;
      prep.op = Op::kPrepare;
      prep.default_key = default_key_;
      const BucketShape shape = ShapeOf(b);
      prep.batch = shape.batch;
      prep.seqlen = shape.seqlen;
      prep.q_len = IsPrefillBucket(b) ? shape.q_len : 0;
      prep.seed = o_.input_seed;
      if (absl::Status s = started.ok() ? worker.Prepare(prep) : started; !s.ok()) {
        if (!budget_.Cancelled()) ur.error = std::string(s.message());
      } else {
        int tried = 0;
        const int planned = PlannedMeasurements(so, cands.size());
        m.emplace(db_, u, *g.compile, worker,
                  [this, &g, b](const Variant& v, int reps) { return ExpectedSeconds(g, b, v, reps); },
                  o_.max_consecutive_crashes, *earlier, [&](const std::string& key, const Outcome& o) {
                    std::lock_guard<std::mutex> l(shared_.mu);
                    ++shared_.tried;
                    ProgressEvent e;
                    e.kind = ProgressEvent::Kind::kMeasured;
                    e.device = dev.ordinal;
                    e.bucket = ur.bucket;
                    e.unit = unit_no;
                    e.tried = ++tried;
                    e.planned = planned;
                    e.candidates = ur.candidates;
                    e.key = key;
                    e.outcome = o;
                    if (const Trial* f = m->fastest()) {
                      e.best_key = f->key;
                      e.best_us = f->outcome.median_us;
                    }
                    Emit(e);
                  });
        const StrategyResult r = RunStrategy(cands, *m, slice, so);
        ur.budget_exhausted = r.budget_exhausted;
        if (!m->infra_error().ok() && !budget_.Cancelled()) ur.error = std::string(m->infra_error().message());
        const internal::UnitCounts& c = m->counts();
        ur.measured = c.measured;
        ur.cached = c.cached;
        ur.pruned = c.pruned;
        ur.failed = c.failed;
        ur.wrong = c.wrong;
        ur.timeout = c.timeout;
        const internal::UnitTimes& times = m->times();
        timing.measurements += c.measured;
        timing.measure_s += times.measure_s;
        timing.compile_wait_s += times.compile_wait_s;
        timing.db_s += times.db_s;
      }
    }
    t0 = Now();
    // Keep the best so far whatever stopped us: everything stored was verified.
    if (absl::StatusOr<std::optional<Trial>> best = db_.StoreBest(u); best.ok() && *best) {
      ur.best_key = (*best)->key;
      ur.best_us = (*best)->outcome.median_us;
    } else if (!best.ok() && ur.error.empty()) {
      ur.error = std::string(best.status().message());
    }
    if (absl::StatusOr<std::vector<Trial>> all = db_.Earlier(u); all.ok()) {
      std::vector<Trial> def;
      for (const Trial& t : *all)
        if (t.key == g.baseline_key) def.push_back(t);
      if (std::optional<Trial> t = PickBest(def)) ur.default_us = t->outcome.median_us;
    }
    timing.db_s += Now() - t0;
    std::lock_guard<std::mutex> l(shared_.mu);
    ProgressEvent e;
    e.kind = ProgressEvent::Kind::kUnitDone;
    e.device = dev.ordinal;
    e.bucket = ur.bucket;
    e.unit = unit_no;
    e.candidates = ur.candidates;
    e.tried = ur.measured + ur.cached + ur.pruned;
    e.best_key = ur.best_key;
    e.best_us = ur.best_us;
    e.message = ur.error;
    Emit(e);
    return ur;
  }

  const TuneRequest& req_;
  const TuneOptions& o_;
  TuningDb& db_;
  const WarmStart& warm_;
  std::vector<DeviceInfo> devices_;
  Budget budget_;
  const std::string default_key_;
  int64_t problem_id_ = 0;
  std::vector<std::unique_ptr<Group>> groups_;
  Shared shared_;
  std::vector<size_t> order_;  // request indexes in the order units are handed out (LongestFirst)
  // Timing (tune_timing.h): real seconds. timing_[d] and ended_[d] belong to device d's thread.
  const double created_;
  double run_start_ = 0, run_end_ = 0, setup_db_s_ = 0;
  std::vector<WorkerTiming> timing_;
  std::vector<double> ended_;
};

}  // namespace

std::string DefaultVariantKey(const Problem& p, const Algorithm& a, int sm) {
  // Multi-token decode has no portable family: its default is decode_sm90's, on any device.
  const KernelFamily* f = ServingFamily(p, sm);
  if (f == nullptr) f = ServingFamily(p, kAnySm);
  if (f == nullptr) return std::string();
  absl::StatusOr<Variant> v = Variant::Create(p, a, CanonicalSchedule(p, a, f->Default(p, a)));
  return v.ok() ? v->Key() : std::string();
}

absl::StatusOr<TuneReport> Tune(const TuneRequest& req, const TuneOptions& o, const TuneDeps& deps) {
  if (absl::Status s = ValidateProblemOnly(req.problem, req.algorithm); !s.ok())
    return absl::InvalidArgumentError(absl::StrCat("bad problem: ", s.message()));
  if (DefaultVariantKey(req.problem, req.algorithm).empty())
    return absl::InvalidArgumentError("the problem has no default variant to verify candidates against");
  if (req.buckets.empty()) return absl::InvalidArgumentError("no shape buckets to tune");
  // Decode tunes on BucketFor buckets, prefill and bwd on PrefillBucketFor ones (bucket.h).
  for (const ShapeBucket& b : req.buckets)
    if (IsPrefillBucket(b) != UsesPrefillBuckets(req.problem.mode))
      return absl::InvalidArgumentError(absl::StrCat("bucket ", ToString(b), ": a ",
                                                     IsPrefillBucket(b) ? "prefill" : "decode",
                                                     " bucket for a ", ToString(req.problem.mode), " problem"));
  if (o.worker_argv.empty()) return absl::InvalidArgumentError("no worker command");
  if (o.db_path.empty()) return absl::InvalidArgumentError("no database path");
  for (const std::string& k : o.extra_candidates) {
    if (IsTestOnlyKey(k) && !o.allow_test_variants)
      return absl::InvalidArgumentError(
          absl::StrCat(k, ": a test-only variant; planting one needs TuneOptions::allow_test_variants"));
    absl::StatusOr<Variant> v = Variant::Parse(k, {.allow_test_faults = o.allow_test_variants});
    if (!v.ok()) return v.status();
    if (!(v->problem() == req.problem) || !(v->algorithm() == req.algorithm))
      return absl::InvalidArgumentError(absl::StrCat(k, ": not a variant of the problem being tuned"));
  }
  std::vector<DeviceInfo> devices = deps.devices;
  if (devices.empty()) {
    absl::StatusOr<std::vector<DeviceInfo>> found = VisibleDevices();
    if (!found.ok()) return found.status();
    devices = *std::move(found);
  }
  std::error_code ec;
  for (const std::string& s : o.seed_dbs) {
    if (!std::filesystem::exists(s, ec))  // before the database being tuned is created
      return absl::NotFoundError(absl::StrCat("seed database ", s, ": no such file"));
    if (std::filesystem::equivalent(s, o.db_path, ec))
      return absl::InvalidArgumentError(
          absl::StrCat("seed database ", s, " is the database being tuned (its configs seed the run anyway)"));
  }
  absl::StatusOr<std::unique_ptr<TuningDb>> db = TuningDb::Open(o.db_path);
  if (!db.ok()) return db.status();
  absl::StatusOr<std::unique_ptr<WarmStart>> warm = WarmStart::Open((*db)->store(), o.seed_dbs);
  if (!warm.ok()) return warm.status();
  cache::RunLock lock(o.db_path, [&] { (void)(*db)->store().MarkRunningAsInterrupted(); });
  Tuning t(req, o, deps.clock ? *deps.clock : SteadyClock(), **db, **warm, std::move(devices));
  if (absl::Status s = t.Setup(deps); !s.ok()) return s;
  t.Run();
  return t.Report();
}

}  // namespace parallax::search
