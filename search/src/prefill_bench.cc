#include "parallax/search/prefill_bench.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <type_traits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "device_fill.h"
#include "graph_timing.h"
#include "host_inputs.h"
#include "parallax/codegen/reference.h"

namespace parallax::search {
namespace {

using internal::Api;
using internal::DevBuf;

constexpr int kReducedLen = 512;      // reduced shape: keys (and queries) per sequence at most
constexpr double kMinDelta = 0.05;    // amplified rows below this |delta| are not held to the bound

// Sum over n in [1, hi] of min(n, window) (window 0: n).
int64_t PrefixPairs(int64_t hi, int64_t window) {
  if (hi <= 0) return 0;
  if (window <= 0 || hi <= window) return hi * (hi + 1) / 2;
  return window * (window + 1) / 2 + (hi - window) * window;
}

// Contiguous [B, L, H, D] strides for q/r/out (Lq rows) and k/v (Lk rows); pointers come later.
PrefillArgs BaseArgs(const PrefillShape& s, int batch, int lq, int lk, int window) {
  const Problem& p = s.problem;
  PrefillArgs a;
  a.dtype = p.dtype;
  a.batch = batch;
  a.num_q_heads = p.num_q_heads;
  a.num_kv_heads = p.num_kv_heads;
  a.head_dim = p.head_dim;
  const int64_t qrow = int64_t(p.num_q_heads) * p.head_dim, kvrow = int64_t(p.num_kv_heads) * p.head_dim;
  a.q_stride_h = a.r_stride_h = a.o_stride_h = a.k_stride_h = a.v_stride_h = p.head_dim;
  a.q_stride_l = a.r_stride_l = a.o_stride_l = qrow;
  a.q_stride_b = a.r_stride_b = a.o_stride_b = lq * qrow;
  a.k_stride_l = a.v_stride_l = kvrow;
  a.k_stride_b = a.v_stride_b = lk * kvrow;
  a.seqlen_q = lq;
  a.seqlen_k = lk;
  a.window = window;
  a.affine = s.algorithm.affine;
  return a;
}

void SetPointers(PrefillArgs& a, const PrefillShape& s, const DevBuf& q, const DevBuf& r, const DevBuf& k,
                 const DevBuf& v, const DevBuf& out) {
  a.q = q.get();
  a.r = s.algorithm.probe == Probe::kLearned ? r.get() : nullptr;
  a.k = k.get();
  a.v = v.get();
  a.out = out.get();
}

ref::Family FamilyOf(const PrefillShape& s, int window) {
  ref::Family f;
  f.probe = s.algorithm.probe == Probe::kLearned ? ref::RefProbe::kLearned : ref::RefProbe::kNone;
  f.affine = s.algorithm.affine == Affine::kAmplified ? ref::RefAffine::kAmplified : ref::RefAffine::kPlain;
  f.window = window;
  return f;
}

struct InputSet {
  DevBuf q, r, k, v;
  PrefillArgs args;
};

// One launch at the reduced shape; its output rows are the first `elems` of the packed reference.
struct ReducedRun {
  PrefillArgs args;
  size_t elems = 0;
  std::string what;
};

struct ReducedCase {
  DevBuf q, r, k, v, cuq, cuk, out;
  std::vector<ReducedRun> runs;
  size_t out_elems = 0;
  std::vector<double> want;   // packed [total queries, Hq, D]
  std::vector<char> masked;   // per packed (query, head) row
  long masked_rows = 0;
  std::string name;
};

}  // namespace

int64_t VisiblePairs(int64_t seqlen_q, int64_t seqlen_k, int64_t window) {
  // Row i sees min(Lk - Lq + i + 1, W) keys (at least 0): a run of n = Lk-Lq+1 .. Lk.
  return PrefixPairs(seqlen_k, window) - PrefixPairs(seqlen_k - seqlen_q, window);
}

double PrefillFlops(int batch, int num_q_heads, int head_dim, int seqlen_q, int seqlen_k, int window) {
  return 4.0 * head_dim * double(num_q_heads) * batch * double(VisiblePairs(seqlen_q, seqlen_k, window));
}

double PrefillFlops(const PrefillShape& s) {
  return PrefillFlops(s.batch, s.problem.num_q_heads, s.problem.head_dim, s.seqlen_q, s.seqlen_k, s.window);
}

double PrefillInputSetBytes(const PrefillShape& s) {
  const Problem& p = s.problem;
  const double qs = s.algorithm.probe == Probe::kLearned ? 2 : 1;
  return 2.0 * p.head_dim * s.batch *
         (qs * double(s.seqlen_q) * p.num_q_heads + 2.0 * double(s.seqlen_k) * p.num_kv_heads);
}

struct PrefillBench::State {
  Runtime* rt = nullptr;
  PrefillShape shape;
  BenchOptions opts;
  CUstream stream = nullptr;
  std::unique_ptr<internal::DeviceFill> fill;
  std::vector<std::unique_ptr<InputSet>> sets;
  DevBuf out;  // shared by the sets
  double set_bytes = 0;
  std::unique_ptr<ReducedCase> reduced;

  ~State() {
    if (stream) Api()->cuStreamDestroy_v2(stream);
  }

  absl::Status Run(const std::string& key, PrefillArgs a) {
    a.variant_key = key;
    absl::StatusOr<Variant> v = rt->PlanPrefill(a);
    if (!v.ok()) return v.status();
    PLX_RETURN_IF_ERROR(rt->RunPrefill(*v, a, stream));
    return cu::Check(Api()->cuStreamSynchronize(stream), "prefill (synchronize)");
  }

  absl::Status MakeSet(int index, InputSet& set) {
    const Problem& p = shape.problem;
    const int D = p.head_dim;
    const int64_t qrows = int64_t(shape.batch) * shape.seqlen_q * p.num_q_heads;
    const int64_t kvrows = int64_t(shape.batch) * shape.seqlen_k * p.num_kv_heads;
    const bool learned = shape.algorithm.probe == Probe::kLearned;
    const uint64_t seed = opts.seed * 1000003ull + index * 8ull;
    PLX_RETURN_IF_ERROR(set.q.Alloc(qrows * D * 2));
    PLX_RETURN_IF_ERROR(set.r.Alloc(learned ? qrows * D * 2 : 2));
    PLX_RETURN_IF_ERROR(set.k.Alloc(kvrows * D * 2));
    PLX_RETURN_IF_ERROR(set.v.Alloc(kvrows * D * 2));
    PLX_RETURN_IF_ERROR(fill->Rows(set.q.p, qrows, D, p.dtype, true, seed + 1, stream));
    if (learned) PLX_RETURN_IF_ERROR(fill->Rows(set.r.p, qrows, D, p.dtype, true, seed + 2, stream));
    PLX_RETURN_IF_ERROR(fill->Rows(set.k.p, kvrows, D, p.dtype, true, seed + 3, stream));
    PLX_RETURN_IF_ERROR(fill->Rows(set.v.p, kvrows, D, p.dtype, false, seed + 4, stream));
    set.args = BaseArgs(shape, shape.batch, shape.seqlen_q, shape.seqlen_k, shape.window);
    SetPointers(set.args, shape, set.q, set.r, set.k, set.v, out);
    return absl::OkStatus();
  }

  // Host-made inputs at a reduced shape, packed along the tokens, and their float64 reference.
  absl::Status MakeReduced() {
    auto c = std::make_unique<ReducedCase>();
    const Problem& p = shape.problem;
    const int B = std::min(shape.batch, 2), D = p.head_dim, Hq = p.num_q_heads, Hkv = p.num_kv_heads;
    const int lk = std::min(shape.seqlen_k, kReducedLen);
    int lq = std::min(shape.seqlen_q, lk);
    if (shape.seqlen_q < shape.seqlen_k && lq == lk) lq = std::max(1, lk / 2);  // a chunk stays a chunk
    // Exercise the window: one at least as long as the reduced sequence would mask nothing.
    const int window = shape.window > 0 ? std::min(shape.window, std::max(1, lk / 2)) : 0;
    std::vector<int> lens_q = {lq}, lens_k = {lk};
    if (B == 2) {  // ragged, not a multiple of any tile
      const int lk1 = std::max(1, lk - lk / 3 - 1);
      lens_k.push_back(lk1);
      lens_q.push_back(lq == lk ? lk1 : std::clamp(lq - lq / 3 - 1, 1, lk1));
    }
    c->name = absl::StrCat("b", B, "-q", lq, "-k", lk, B == 2 ? absl::StrCat("+q", lens_q[1], "-k", lens_k[1]) : "",
                           window ? absl::StrCat("-w", window) : "");
    std::mt19937_64 rng(opts.seed * 7919 + 23);
    ref::PrefillInputs in;
    in.batch = B; in.num_q_heads = Hq; in.num_kv_heads = Hkv; in.head_dim = D;
    in.max_seqlen_q = lq; in.max_seqlen_k = lk;
    in.seqlens_q = lens_q; in.seqlens_k = lens_k;
    in.q = internal::RandomRows(rng, size_t(B) * lq * Hq, D, true);
    in.r = internal::RandomRows(rng, size_t(B) * lq * Hq, D, true);
    in.k = internal::RandomRows(rng, size_t(B) * lk * Hkv, D, true);
    in.v = internal::RandomRows(rng, size_t(B) * lk * Hkv, D, false);
    const auto qh = internal::Quantise(in.q, p.dtype), rh = internal::Quantise(in.r, p.dtype);
    const auto kh = internal::Quantise(in.k, p.dtype), vh = internal::Quantise(in.v, p.dtype);
    // Padded [B, lmax, H, D] -> packed [sum of lens, H, D].
    auto pack = [&](const auto& src, const std::vector<int>& lens, int lmax, int heads) {
      std::remove_cvref_t<decltype(src)> dst;
      const size_t row = size_t(heads) * D;
      for (int b = 0; b < B; ++b)
        dst.insert(dst.end(), src.begin() + b * lmax * row, src.begin() + (b * lmax + lens[b]) * row);
      return dst;
    };
    const std::vector<int> cuq = {0, lens_q[0], lens_q[0] + (B == 2 ? lens_q[1] : 0)};
    const std::vector<int> cuk = {0, lens_k[0], lens_k[0] + (B == 2 ? lens_k[1] : 0)};
    PLX_RETURN_IF_ERROR(c->q.Upload(pack(qh, lens_q, lq, Hq).data(), size_t(cuq[B]) * Hq * D * 2));
    PLX_RETURN_IF_ERROR(c->r.Upload(pack(rh, lens_q, lq, Hq).data(), size_t(cuq[B]) * Hq * D * 2));
    PLX_RETURN_IF_ERROR(c->k.Upload(pack(kh, lens_k, lk, Hkv).data(), size_t(cuk[B]) * Hkv * D * 2));
    PLX_RETURN_IF_ERROR(c->v.Upload(pack(vh, lens_k, lk, Hkv).data(), size_t(cuk[B]) * Hkv * D * 2));
    PLX_RETURN_IF_ERROR(c->cuq.Upload(cuq.data(), (B + 1) * sizeof(int)));
    PLX_RETURN_IF_ERROR(c->cuk.Upload(cuk.data(), (B + 1) * sizeof(int)));
    c->out_elems = size_t(cuq[B]) * Hq * D;
    PLX_RETURN_IF_ERROR(c->out.Alloc(c->out_elems * 2));
    if (B == 2) {  // both sequences, packed, through cu_seqlens
      ReducedRun run{BaseArgs(shape, 2, lq, lk, window), c->out_elems, "varlen"};
      SetPointers(run.args, shape, c->q, c->r, c->k, c->v, c->out);
      run.args.cu_seqlens_q = static_cast<const int*>(c->cuq.get());
      run.args.cu_seqlens_k = static_cast<const int*>(c->cuk.get());
      c->runs.push_back(run);
    }
    // The first sequence through the uniform-length path (the one timed): packed sequence 0
    // starts where a batch of one would.
    ReducedRun uniform{BaseArgs(shape, 1, lq, lk, window), size_t(lq) * Hq * D, "uniform"};
    SetPointers(uniform.args, shape, c->q, c->r, c->k, c->v, c->out);
    c->runs.push_back(uniform);

    const ref::Family f = FamilyOf(shape, window);
    absl::StatusOr<std::vector<double>> want = ref::Prefill(in, f);
    if (!want.ok()) return want.status();
    c->want = pack(*want, lens_q, lq, Hq);
    c->masked.assign(c->want.size() / D, 0);
    if (f.probe == ref::RefProbe::kLearned && f.affine == ref::RefAffine::kAmplified) {
      // delta per row from the reference itself: amplified - softmax = (plain - softmax) / delta.
      ref::Family plain_f = f, soft_f = f;
      plain_f.affine = ref::RefAffine::kPlain;
      soft_f.probe = ref::RefProbe::kNone;
      soft_f.affine = ref::RefAffine::kPlain;
      absl::StatusOr<std::vector<double>> plain = ref::Prefill(in, plain_f), soft = ref::Prefill(in, soft_f);
      if (!plain.ok()) return plain.status();
      if (!soft.ok()) return soft.status();
      const std::vector<double> pl = pack(*plain, lens_q, lq, Hq), so = pack(*soft, lens_q, lq, Hq);
      for (size_t row = 0; row < c->masked.size(); ++row) {
        double num = 0, den = 0;
        for (int d = 0; d < D; ++d) {
          const size_t e = row * D + d;
          num += (pl[e] - so[e]) * (c->want[e] - so[e]);
          den += (c->want[e] - so[e]) * (c->want[e] - so[e]);
        }
        if (den > 0 && std::fabs(num / den) < kMinDelta) c->masked[row] = 1;
      }
    }
    for (char m : c->masked) c->masked_rows += m;
    reduced = std::move(c);
    return absl::OkStatus();
  }
};

PrefillBench::PrefillBench(std::unique_ptr<State> s) : s_(std::move(s)) {}
PrefillBench::~PrefillBench() = default;

absl::StatusOr<std::unique_ptr<PrefillBench>> PrefillBench::Create(Runtime& rt, const PrefillShape& shape,
                                                                   const BenchOptions& o) {
  const Problem& p = shape.problem;
  if (p.mode != Mode::kPrefill) return absl::InvalidArgumentError("only prefill shapes are benchmarked here");
  if (p.kv_layout != KvLayout::kContiguous)
    return absl::InvalidArgumentError("paged KV is decode-only: the runtime's prefill reads contiguous K/V");
  if (shape.batch < 1 || shape.seqlen_k < 1 || shape.seqlen_q < 1 || shape.seqlen_q > shape.seqlen_k)
    return absl::InvalidArgumentError(absl::StrCat("batch=", shape.batch, " seqlen_q=", shape.seqlen_q, " seqlen_k=",
                                                   shape.seqlen_k, ": need batch >= 1 and 1 <= seqlen_q <= seqlen_k"));
  if (shape.window < 0 || p.window != (shape.window > 0))
    return absl::InvalidArgumentError(absl::StrCat("window=", shape.window, ": must be >= 0, and > 0 exactly when the "
                                                   "problem has a window"));
  PLX_RETURN_IF_ERROR(rt.MakeCurrent());
  auto st = std::make_unique<State>();
  st->rt = &rt;
  st->shape = shape;
  st->opts = o;
  // A blocking stream, ordered after the legacy-stream memsets and copies (see DecodeBench).
  PLX_CU_RETURN_IF_ERROR(Api(), cuStreamCreate(&st->stream, CU_STREAM_DEFAULT));
  absl::StatusOr<std::unique_ptr<internal::DeviceFill>> fill =
      internal::DeviceFill::Create(rt.device().arch(), rt.device().sm_count);
  if (!fill.ok()) return fill.status();
  st->fill = *std::move(fill);

  st->set_bytes = PrefillInputSetBytes(shape);
  const size_t out_elems = size_t(shape.batch) * shape.seqlen_q * p.num_q_heads * p.head_dim;
  const double mem = double(rt.device().mem_bytes) - double(out_elems) * 2;
  const int sets = InputSetsFor(st->set_bytes, rt.device().l2_bytes, mem, o);
  if (sets < 1)
    return absl::ResourceExhaustedError(absl::StrFormat(
        "batch %d x seqlen_q %d x seqlen_k %d: one input set needs %.1f GiB, more than %.0f%% of the device's %.1f GiB",
        shape.batch, shape.seqlen_q, shape.seqlen_k, st->set_bytes / (1 << 30), o.mem_fraction * 100,
        double(rt.device().mem_bytes) / (1 << 30)));
  PLX_RETURN_IF_ERROR(st->out.Alloc(out_elems * 2));
  for (int i = 0; i < sets; ++i) {
    auto set = std::make_unique<InputSet>();
    PLX_RETURN_IF_ERROR(st->MakeSet(i, *set));
    st->sets.push_back(std::move(set));
  }
  if (o.reduced_check) PLX_RETURN_IF_ERROR(st->MakeReduced());
  PLX_CU_RETURN_IF_ERROR(Api(), cuStreamSynchronize(st->stream));
  return std::unique_ptr<PrefillBench>(new PrefillBench(std::move(st)));
}

absl::StatusOr<VerifyResult> PrefillBench::Verify(const Variant& v) {
  State& st = *s_;
  const DType t = st.shape.problem.dtype;
  const int D = st.shape.problem.head_dim;
  VerifyResult r;
  r.reduced_tol = internal::Tolerance(t);
  if (!st.reduced) {
    r.ok = true;
    return r;
  }
  ReducedCase& c = *st.reduced;
  r.masked_rows = c.masked_rows;
  for (const ReducedRun& run : c.runs) {
    PLX_RETURN_IF_ERROR(internal::Poison(c.out, c.out_elems, t));
    PLX_RETURN_IF_ERROR(st.Run(v.Key(), run.args));
    absl::StatusOr<std::vector<double>> got = internal::Download(c.out, run.elems, t);
    if (!got.ok()) return got.status();
    std::vector<double> want(c.want.begin(), c.want.begin() + run.elems);
    for (size_t row = 0; row < run.elems / D; ++row) {
      if (!c.masked[row]) continue;
      std::fill_n(want.begin() + row * D, D, 0.0);
      std::fill_n(got->begin() + row * D, D, 0.0);
    }
    const ref::ErrorStats e = ref::Compare(*got, want);
    r.reduced_rel = std::max(r.reduced_rel, e.rel_frobenius);
    if (!(e.rel_frobenius <= r.reduced_tol)) {  // NaN-safe
      r.reduced_rel = e.rel_frobenius;
      r.error = absl::StrFormat("reduced shape %s (%s): rel. Frobenius error %.3g vs the float64 reference exceeds "
                                "%.3g (%ld non-finite)", c.name, run.what, e.rel_frobenius, r.reduced_tol, e.non_finite);
      return r;
    }
  }
  r.ok = true;
  return r;
}

absl::StatusOr<Timing> PrefillBench::Time(const std::string& key, int reps) {
  State& st = *s_;
  PLX_RETURN_IF_ERROR(st.rt->MakeCurrent());
  PrefillArgs a0 = st.sets[0]->args;
  a0.variant_key = key;
  Choice choice = Choice::kDefault;
  absl::StatusOr<Variant> v = st.rt->PlanPrefill(a0, &choice);
  if (!v.ok()) return v.status();
  auto pass = [&](CUstream stream) -> absl::Status {
    for (auto& set : st.sets) PLX_RETURN_IF_ERROR(st.rt->RunPrefill(*v, set->args, stream));
    return absl::OkStatus();
  };
  absl::StatusOr<internal::SampleStats> s = internal::TimeGraph(
      st.stream, pass, static_cast<int>(st.sets.size()), st.opts.warmup, st.opts.min_sample_us, reps);
  if (!s.ok()) return s.status();
  Timing t;
  t.reps = reps;
  t.median_us = s->median_us;
  t.min_us = s->min_us;
  t.max_us = s->max_us;
  t.variant = v->Key();
  t.choice = ToString(choice);
  return t;
}

int PrefillBench::num_sets() const { return static_cast<int>(s_->sets.size()); }

double PrefillBench::flops_per_launch() const { return PrefillFlops(s_->shape); }

nlohmann::json PrefillBench::Info() const {
  const State& st = *s_;
  nlohmann::json j = {{"sets", st.sets.size()},
                      {"set_bytes", st.set_bytes},
                      {"l2_bytes", st.rt->device().l2_bytes},
                      {"flops_per_launch", flops_per_launch()}};
  if (st.reduced) {
    j["reduced"] = st.reduced->name;
    j["masked_rows"] = st.reduced->masked_rows;
  }
  return j;
}

}  // namespace parallax::search
