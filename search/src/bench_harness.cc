#include "bench_harness.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "device_fill.h"
#include "graph_timing.h"

namespace parallax::search::internal {
namespace {

// The spec's tolerance against the float64 reference (relative Frobenius).
double Tolerance(DType t) { return t == DType::kBF16 ? 1e-2 : 2e-3; }

}  // namespace

absl::StatusOr<void*> DeviceArena::Alloc(size_t bytes) {
  auto b = std::make_unique<DevBuf>();
  PLX_RETURN_IF_ERROR(b->Alloc(bytes));
  bufs_.push_back(std::move(b));
  return bufs_.back()->get();
}

absl::StatusOr<void*> DeviceArena::Upload(const void* src, size_t bytes) {
  auto b = std::make_unique<DevBuf>();
  PLX_RETURN_IF_ERROR(b->Upload(src, bytes));
  bufs_.push_back(std::move(b));
  return bufs_.back()->get();
}

absl::StatusOr<void*> SetMaker::Rows(int64_t rows, int d, bool rms, uint64_t seed) {
  absl::StatusOr<void*> p = mem_.Alloc(size_t(rows) * d * 2);
  if (!p.ok()) return p.status();
  PLX_RETURN_IF_ERROR(fill_.Rows(reinterpret_cast<CUdeviceptr>(*p), rows, d, dtype_, rms, seed, stream_));
  return p;
}

absl::StatusOr<DeviceQrkv> SetMaker::Qrkv(int64_t q_rows, int64_t kv_rows, int d, bool with_r) {
  DeviceQrkv in;
  absl::StatusOr<void*> q = Rows(q_rows, d, true, seed_ + 1);
  if (!q.ok()) return q.status();
  absl::StatusOr<void*> r = with_r ? Rows(q_rows, d, true, seed_ + 2) : mem_.Alloc(2);
  if (!r.ok()) return r.status();
  absl::StatusOr<void*> k = Rows(kv_rows, d, true, seed_ + 3);
  if (!k.ok()) return k.status();
  absl::StatusOr<void*> v = Rows(kv_rows, d, false, seed_ + 4);
  if (!v.ok()) return v.status();
  return DeviceQrkv{*q, *r, *k, *v};
}

BenchHarness::BenchHarness(Runtime& rt, std::unique_ptr<BenchFamily> family, const BenchOptions& o)
    : rt_(rt), family_(std::move(family)), layout_(family_->Layout()), opts_(o) {}

BenchHarness::~BenchHarness() {
  if (stream_) Api()->cuStreamDestroy_v2(stream_);
}

absl::StatusOr<std::unique_ptr<BenchHarness>> BenchHarness::Create(Runtime& rt, std::unique_ptr<BenchFamily> family,
                                                                   const BenchOptions& o) {
  PLX_RETURN_IF_ERROR(rt.MakeCurrent());
  std::unique_ptr<BenchHarness> h(new BenchHarness(rt, std::move(family), o));
  // A blocking stream: it orders after the legacy-stream memsets and copies (poisoning,
  // uploads) that the driver table offers only in their synchronous-looking, legacy form.
  PLX_CU_RETURN_IF_ERROR(Api(), cuStreamCreate(&h->stream_, CU_STREAM_DEFAULT));
  absl::StatusOr<std::unique_ptr<DeviceFill>> fill = DeviceFill::Create(rt.device().arch(), rt.device().sm_count);
  if (!fill.ok()) return fill.status();
  h->fill_ = *std::move(fill);
  PLX_RETURN_IF_ERROR(h->MakeSets());
  if (o.reduced_check) {
    absl::StatusOr<ReducedCase> c = h->family_->MakeReduced(h->mem_, o.seed);
    if (!c.ok()) return c.status();
    h->reduced_ = std::make_unique<ReducedCase>(*std::move(c));
    h->masked_rows_ = std::count(h->reduced_->masked.begin(), h->reduced_->masked.end(), 1);
  }
  PLX_CU_RETURN_IF_ERROR(Api(), cuStreamSynchronize(h->stream_));
  if (!o.reference_key.empty()) PLX_RETURN_IF_ERROR(h->MakeFullReference());
  return h;
}

absl::Status BenchHarness::MakeSets() {
  const DeviceInfo& dev = rt_.device();
  const int sets = InputSetsFor(layout_.set_bytes, dev.l2_bytes, double(dev.mem_bytes) - layout_.reserved_bytes, opts_);
  if (sets < 1)
    return absl::ResourceExhaustedError(
        absl::StrFormat("%s: one input set needs %.1f GiB, more than %.0f%% of the device's %.1f GiB", layout_.shape,
                        layout_.set_bytes / (1 << 30), opts_.mem_fraction * 100, double(dev.mem_bytes) / (1 << 30)));
  PLX_RETURN_IF_ERROR(mem_.Alloc(layout_.out_elems * 2, &out_));
  for (int i = 0; i < sets; ++i) {
    SetMaker m(mem_, *fill_, stream_, layout_.dtype, i, opts_.seed * 1000003ull + i * 8ull, out_);
    PLX_RETURN_IF_ERROR(family_->MakeSet(m));
    num_sets_ = i + 1;
  }
  return absl::OkStatus();
}

absl::Status BenchHarness::MakeFullReference() {
  const std::string& key = opts_.reference_key;
  PLX_RETURN_IF_ERROR(Poison(out_, layout_.out_elems, layout_.dtype));
  if (absl::Status s = Run(Pick{nullptr, key}, Target{Target::kSet, 0}); !s.ok())
    return absl::Status(s.code(), absl::StrCat("reference variant ", key, ": ", s.message()));
  absl::StatusOr<std::vector<double>> full = Download(out_, layout_.out_elems, layout_.dtype);
  if (!full.ok()) return full.status();
  full_ref_ = *std::move(full);
  if (ref::Compare(full_ref_, full_ref_).non_finite > 0)
    return absl::InternalError(absl::StrCat("reference variant ", key, " wrote non-finite values"));
  return absl::OkStatus();
}

absl::Status BenchHarness::Run(const Pick& pick, Target t) {
  absl::StatusOr<Planned> plan = family_->Plan(pick, t);
  if (!plan.ok()) return plan.status();
  PLX_RETURN_IF_ERROR(plan->run(t, stream_));
  return cu::Check(Api()->cuStreamSynchronize(stream_), absl::StrCat(layout_.name, " (synchronize)").c_str());
}

absl::StatusOr<ref::ErrorStats> BenchHarness::RunAndCompare(const Pick& pick, Target t, void* out, size_t out_elems,
                                                            const std::vector<double>& want, size_t elems,
                                                            const std::vector<char>& masked, int row) {
  PLX_RETURN_IF_ERROR(Poison(out, out_elems, layout_.dtype));
  PLX_RETURN_IF_ERROR(Run(pick, t));
  absl::StatusOr<std::vector<double>> got = Download(out, elems, layout_.dtype);
  if (!got.ok()) return got.status();
  if (masked.empty() && elems == want.size()) return ref::Compare(*got, want);
  std::vector<double> w(want.begin(), want.begin() + elems);
  for (size_t i = 0; !masked.empty() && i < elems / row; ++i) {
    if (!masked[i]) continue;
    std::fill_n(w.begin() + i * row, row, 0.0);
    std::fill_n(got->begin() + i * row, row, 0.0);
  }
  return ref::Compare(*got, w);
}

absl::StatusOr<ref::ErrorStats> BenchHarness::RunAndCompareParts(const Pick& pick, Target t, const ReducedCase& c,
                                                                 const std::vector<ReducedPart>& parts,
                                                                 std::string* worst) {
  PLX_RETURN_IF_ERROR(Poison(c.out, c.out_elems, layout_.dtype));
  PLX_RETURN_IF_ERROR(Run(pick, t));
  absl::StatusOr<std::vector<double>> got = Download(c.out, c.out_elems, layout_.dtype);
  if (!got.ok()) return got.status();
  ref::ErrorStats out;
  bool first = true;
  for (const ReducedPart& part : parts) {
    if (part.offset + part.elems > got->size() || part.offset + part.elems > c.want.size())
      return absl::InternalError(absl::StrCat(layout_.name, ": reduced part ", part.name, " lies outside the output"));
    const std::vector<double> g(got->begin() + part.offset, got->begin() + part.offset + part.elems);
    const std::vector<double> w(c.want.begin() + part.offset, c.want.begin() + part.offset + part.elems);
    const ref::ErrorStats e = ref::Compare(g, w);
    // NaN-safe: a part whose error is not finite is the worst.
    if (first || !(e.rel_frobenius <= out.rel_frobenius)) {
      out = e;
      *worst = part.name;
      first = false;
    }
  }
  return out;
}

absl::StatusOr<VerifyResult> BenchHarness::Verify(const Variant& v) {
  VerifyResult r;
  r.reduced_tol = layout_.tolerance > 0 ? layout_.tolerance : Tolerance(layout_.dtype);
  if (reduced_) {
    const ReducedCase& c = *reduced_;
    r.masked_rows = masked_rows_;
    for (size_t i = 0; i < c.runs.size(); ++i) {
      const ReducedRun& run = c.runs[i];
      const Target t{Target::kReduced, int(i)};
      std::string part;
      absl::StatusOr<ref::ErrorStats> e =
          run.parts.empty() ? RunAndCompare(Pick{&v, ""}, t, c.out, c.out_elems, c.want, run.elems, c.masked, c.row)
                            : RunAndCompareParts(Pick{&v, ""}, t, c, run.parts, &part);
      if (!e.ok()) return e.status();
      r.reduced_rel = std::max(r.reduced_rel, e->rel_frobenius);
      if (!(e->rel_frobenius <= r.reduced_tol)) {  // NaN-safe
        r.reduced_rel = e->rel_frobenius;
        const std::string what = run.what.empty() || part.empty() ? run.what + part : run.what + ", " + part;
        r.error = absl::StrFormat("reduced shape %s%s: rel. Frobenius error %.3g vs the float64 reference exceeds "
                                  "%.3g (%ld non-finite)", c.name, what.empty() ? "" : " (" + what + ")",
                                  e->rel_frobenius, r.reduced_tol, e->non_finite);
        return r;
      }
    }
  }
  if (!full_ref_.empty()) {
    absl::StatusOr<ref::ErrorStats> e = RunAndCompare(Pick{&v, ""}, Target{Target::kSet, 0}, out_, layout_.out_elems,
                                                      full_ref_, full_ref_.size(), {}, 0);
    if (!e.ok()) return e.status();
    r.full_rel = e->rel_frobenius;
    if (!(e->rel_frobenius <= opts_.full_tolerance)) {
      r.error = absl::StrFormat("full shape %s: rel. Frobenius error %.3g vs %s exceeds %.3g (%ld non-finite)",
                                layout_.full_name, e->rel_frobenius, opts_.reference_key, opts_.full_tolerance,
                                e->non_finite);
      return r;
    }
  }
  r.ok = true;
  return r;
}

absl::StatusOr<Timing> BenchHarness::Time(const Pick& pick, int reps) {
  PLX_RETURN_IF_ERROR(rt_.MakeCurrent());
  absl::StatusOr<Planned> plan = family_->Plan(pick, Target{Target::kSet, 0});
  if (!plan.ok()) return plan.status();
  auto pass = [&](CUstream stream) -> absl::Status {
    for (int i = 0; i < num_sets_; ++i) PLX_RETURN_IF_ERROR(plan->run(Target{Target::kSet, i}, stream));
    return absl::OkStatus();
  };
  absl::StatusOr<SampleStats> s = TimeGraph(stream_, pass, num_sets_, opts_.warmup, opts_.min_sample_us, reps);
  if (!s.ok()) return s.status();
  Timing t;
  t.reps = reps;
  t.median_us = s->median_us;
  t.min_us = s->min_us;
  t.max_us = s->max_us;
  t.num_splits = plan->num_splits;
  t.variant = plan->variant;
  t.choice = ToString(plan->choice);
  return t;
}

nlohmann::json BenchHarness::Info() const {
  nlohmann::json j = {{"sets", num_sets_}, {"set_bytes", layout_.set_bytes}, {"l2_bytes", rt_.device().l2_bytes}};
  if (reduced_) {
    j["reduced"] = reduced_->name;
    if (!reduced_->masked.empty()) j["masked_rows"] = masked_rows_;
  }
  if (!opts_.reference_key.empty()) j["full_reference"] = opts_.reference_key;
  family_->AddInfo(j);
  return j;
}

ReducedLengths ReducedLengthsOf(int batch, int seqlen_q, int seqlen_k, int window, int max_len) {
  ReducedLengths r;
  r.batch = std::min(batch, 2);
  r.lk = std::min(seqlen_k, max_len);
  r.lq = std::min(seqlen_q, r.lk);
  if (seqlen_q < seqlen_k && r.lq == r.lk) r.lq = std::max(1, r.lk / 2);  // a chunk stays a chunk
  // Exercise the window: one at least as long as the reduced sequence would mask nothing.
  r.window = window > 0 ? std::min(window, std::max(1, r.lk / 2)) : 0;
  r.lens_q = {r.lq};
  r.lens_k = {r.lk};
  if (r.batch == 2) {  // ragged, not a multiple of any tile
    const int lk1 = std::max(1, r.lk - r.lk / 3 - 1);
    r.lens_k.push_back(lk1);
    r.lens_q.push_back(r.lq == r.lk ? lk1 : std::clamp(r.lq - r.lq / 3 - 1, 1, lk1));
  }
  r.name = absl::StrCat("b", r.batch, "-q", r.lq, "-k", r.lk,
                        r.batch == 2 ? absl::StrCat("+q", r.lens_q[1], "-k", r.lens_k[1]) : "",
                        r.window ? absl::StrCat("-w", r.window) : "");
  return r;
}

}  // namespace parallax::search::internal
