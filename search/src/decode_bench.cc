#include "parallax/search/decode_bench.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "device_fill.h"
#include "graph_timing.h"
#include "host_inputs.h"
#include "parallax/codegen/bucket.h"
#include "parallax/codegen/reference.h"
#include "parallax/search/cost_model.h"

namespace parallax::search {
namespace {

using internal::Api;
using internal::DevBuf;
using internal::PoisonBits;

int WindowFor(const Problem& p, int seqlen) { return p.window ? std::max(1, seqlen / 2) : 0; }
int64_t PagesPerSeq(const Problem& p, int seqlen) { return (seqlen + p.page_size - 1) / p.page_size; }

// Decode arguments for a [B, Hq, D] query and the K/V layout strides; pointers come later.
DecodeArgs BaseArgs(const BenchShape& s, int batch, int seqlen) {
  const Problem& p = s.problem;
  DecodeArgs a;
  a.dtype = p.dtype;
  a.batch = batch;
  a.num_q_heads = p.num_q_heads;
  a.num_kv_heads = p.num_kv_heads;
  a.head_dim = p.head_dim;
  a.q_stride_b = a.r_stride_b = a.o_stride_b = int64_t(p.num_q_heads) * p.head_dim;
  a.q_stride_h = a.r_stride_h = a.o_stride_h = p.head_dim;
  a.seqlen = seqlen;
  a.window = WindowFor(p, seqlen);
  a.affine = s.algorithm.affine;
  const int64_t row = int64_t(p.num_kv_heads) * p.head_dim;
  if (p.kv_layout == KvLayout::kPaged) {
    a.page_size = p.page_size;
    a.block_table_stride = static_cast<int>(PagesPerSeq(p, seqlen));
    a.k_stride_0 = a.v_stride_0 = p.page_size * row;
  } else {
    a.k_stride_0 = a.v_stride_0 = int64_t(seqlen) * row;
  }
  a.k_stride_1 = a.v_stride_1 = row;
  a.k_stride_h = a.v_stride_h = p.head_dim;
  return a;
}

struct InputSet {
  DevBuf q, r, k, v, table;
  DecodeArgs args;
};

struct ReducedCase {
  DevBuf q, r, k, v, table, lens, out;
  DecodeArgs args;
  size_t out_elems = 0;
  std::vector<double> want;
  std::string name;
};

}  // namespace

struct DecodeBench::State {
  Runtime* rt = nullptr;
  BenchShape shape;
  BenchOptions opts;
  CUstream stream = nullptr;
  std::unique_ptr<internal::DeviceFill> fill;
  std::vector<std::unique_ptr<InputSet>> sets;
  DevBuf lens;  // paged: every sequence has seqlen keys
  DevBuf out;
  size_t out_elems = 0;
  double set_bytes = 0;
  std::unique_ptr<ReducedCase> reduced;
  std::vector<double> full_ref;  // reference variant's output on set 0

  ~State() {
    if (stream) Api()->cuStreamDestroy_v2(stream);
  }

  absl::Status Run(const std::string& key, DecodeArgs a) {
    a.variant_key = key;
    return Launch(rt->PlanDecode(a), a);
  }
  // By the variant, not its key: a test-only variant the worker was allowed to parse has no
  // key the runtime accepts.
  absl::Status Run(const Variant& v, const DecodeArgs& a) { return Launch(rt->PlanDecode(a, v), a); }

  absl::Status Launch(const absl::StatusOr<DecodePlan>& plan, const DecodeArgs& a) {
    if (!plan.ok()) return plan.status();
    PLX_RETURN_IF_ERROR(rt->RunDecode(*plan, a, stream));
    return cu::Check(Api()->cuStreamSynchronize(stream), "decode (synchronize)");
  }

  absl::StatusOr<Timing> Time(const absl::StatusOr<DecodePlan>& plan, int reps);

  absl::Status MakeSet(int index, InputSet& set) {
    const Problem& p = shape.problem;
    const int B = shape.batch, L = shape.seqlen, D = p.head_dim;
    const int64_t qrows = int64_t(B) * p.num_q_heads;
    const int64_t pages = p.kv_layout == KvLayout::kPaged ? B * PagesPerSeq(p, L) : 0;
    const int64_t kvrows = (pages > 0 ? pages * p.page_size : int64_t(B) * L) * p.num_kv_heads;
    const uint64_t seed = opts.seed * 1000003ull + index * 8ull;
    PLX_RETURN_IF_ERROR(set.q.Alloc(qrows * D * 2));
    PLX_RETURN_IF_ERROR(set.r.Alloc(qrows * D * 2));
    PLX_RETURN_IF_ERROR(set.k.Alloc(kvrows * D * 2));
    PLX_RETURN_IF_ERROR(set.v.Alloc(kvrows * D * 2));
    PLX_RETURN_IF_ERROR(fill->Rows(set.q.p, qrows, D, p.dtype, true, seed + 1, stream));
    PLX_RETURN_IF_ERROR(fill->Rows(set.r.p, qrows, D, p.dtype, true, seed + 2, stream));
    PLX_RETURN_IF_ERROR(fill->Rows(set.k.p, kvrows, D, p.dtype, true, seed + 3, stream));
    PLX_RETURN_IF_ERROR(fill->Rows(set.v.p, kvrows, D, p.dtype, false, seed + 4, stream));
    set.args = BaseArgs(shape, B, L);
    if (pages > 0) {  // each sequence over shuffled pages of the pool
      std::vector<int> perm(pages);
      std::iota(perm.begin(), perm.end(), 0);
      std::mt19937_64 rng(seed + 5);
      std::shuffle(perm.begin(), perm.end(), rng);
      PLX_RETURN_IF_ERROR(set.table.Upload(perm.data(), perm.size() * sizeof(int)));
      set.args.block_table = static_cast<const int*>(set.table.get());
      set.args.seqlens = static_cast<const int*>(lens.get());
    }
    set.args.q = set.q.get();
    set.args.r = shape.algorithm.probe == Probe::kLearned ? set.r.get() : nullptr;
    set.args.k = set.k.get();
    set.args.v = set.v.get();
    set.args.out = out.get();
    return absl::OkStatus();
  }

  // Host-made inputs at a reduced shape with ragged lengths, and their float64 reference.
  absl::Status MakeReduced() {
    auto c = std::make_unique<ReducedCase>();
    const Problem& p = shape.problem;
    const int B = std::min(shape.batch, 2), L = std::min(shape.seqlen, 2048), D = p.head_dim;
    const int Hq = p.num_q_heads, Hkv = p.num_kv_heads;
    std::vector<int> seqlens = {L};
    if (B == 2) seqlens.push_back(std::max(1, L - L / 3 - 1));  // not a multiple of any tile
    c->name = absl::StrCat("b", B, "-l", L);
    std::mt19937_64 rng(opts.seed * 7919 + 17);
    ref::DecodeInputs in;
    in.batch = B; in.num_q_heads = Hq; in.num_kv_heads = Hkv; in.head_dim = D; in.max_seqlen = L;
    in.seqlens = seqlens;
    in.q = internal::RandomRows(rng, size_t(B) * Hq, D, true);
    in.r = internal::RandomRows(rng, size_t(B) * Hq, D, true);
    in.k = internal::RandomRows(rng, size_t(B) * L * Hkv, D, true);
    in.v = internal::RandomRows(rng, size_t(B) * L * Hkv, D, false);
    const auto qh = internal::Quantise(in.q, p.dtype), rh = internal::Quantise(in.r, p.dtype);
    const auto kh = internal::Quantise(in.k, p.dtype), vh = internal::Quantise(in.v, p.dtype);
    c->args = BaseArgs(shape, B, L);
    PLX_RETURN_IF_ERROR(c->q.Upload(qh.data(), qh.size() * 2));
    PLX_RETURN_IF_ERROR(c->r.Upload(rh.data(), rh.size() * 2));
    PLX_RETURN_IF_ERROR(c->lens.Upload(seqlens.data(), seqlens.size() * sizeof(int)));
    if (p.kv_layout == KvLayout::kPaged) {  // shuffled pages plus unused poisoned ones
      const int ps = p.page_size, per_seq = static_cast<int>(PagesPerSeq(p, L));
      const int num_pages = B * per_seq + 3;
      std::vector<int> perm(num_pages);
      std::iota(perm.begin(), perm.end(), 0);
      std::shuffle(perm.begin(), perm.end(), rng);
      std::vector<int> table(size_t(B) * per_seq);
      std::vector<uint16_t> kp(size_t(num_pages) * ps * Hkv * D, PoisonBits(p.dtype)), vp = kp;
      for (int b = 0; b < B; ++b)
        for (int pg = 0; pg < per_seq; ++pg) {
          const int page = perm[b * per_seq + pg];
          table[b * per_seq + pg] = page;
          for (int s = 0; s < ps && pg * ps + s < seqlens[b]; ++s) {
            const size_t src = (size_t(b) * L + pg * ps + s) * Hkv * D, dst = (size_t(page) * ps + s) * Hkv * D;
            std::copy_n(kh.begin() + src, size_t(Hkv) * D, kp.begin() + dst);
            std::copy_n(vh.begin() + src, size_t(Hkv) * D, vp.begin() + dst);
          }
        }
      PLX_RETURN_IF_ERROR(c->k.Upload(kp.data(), kp.size() * 2));
      PLX_RETURN_IF_ERROR(c->v.Upload(vp.data(), vp.size() * 2));
      PLX_RETURN_IF_ERROR(c->table.Upload(table.data(), table.size() * sizeof(int)));
      c->args.block_table = static_cast<const int*>(c->table.get());
    } else {
      PLX_RETURN_IF_ERROR(c->k.Upload(kh.data(), kh.size() * 2));
      PLX_RETURN_IF_ERROR(c->v.Upload(vh.data(), vh.size() * 2));
    }
    c->out_elems = size_t(B) * Hq * D;
    PLX_RETURN_IF_ERROR(c->out.Alloc(c->out_elems * 2));
    c->args.q = c->q.get();
    c->args.r = shape.algorithm.probe == Probe::kLearned ? c->r.get() : nullptr;
    c->args.k = c->k.get();
    c->args.v = c->v.get();
    c->args.out = c->out.get();
    c->args.seqlens = static_cast<const int*>(c->lens.get());
    ref::Family f;
    f.probe = shape.algorithm.probe == Probe::kLearned ? ref::RefProbe::kLearned : ref::RefProbe::kNone;
    f.affine = shape.algorithm.affine == Affine::kAmplified ? ref::RefAffine::kAmplified : ref::RefAffine::kPlain;
    f.window = c->args.window;
    absl::StatusOr<std::vector<double>> want = ref::Decode(in, f);
    if (!want.ok()) return want.status();
    c->want = *std::move(want);
    reduced = std::move(c);
    return absl::OkStatus();
  }
};

double InputSetBytes(const BenchShape& s) {
  const Problem& p = s.problem;
  const double kv_rows = (p.kv_layout == KvLayout::kPaged ? double(s.batch) * PagesPerSeq(p, s.seqlen) * p.page_size
                                                           : double(s.batch) * s.seqlen) *
                         p.num_kv_heads;
  return 2.0 * kv_rows * p.head_dim * 2 + 2.0 * s.batch * p.num_q_heads * p.head_dim * 2;
}

int InputSetsFor(double set_bytes, double l2_bytes, double mem_bytes, const BenchOptions& o) {
  const int want = std::clamp(static_cast<int>(std::ceil(o.l2_factor * l2_bytes / set_bytes)), 1, o.max_sets);
  const int fit = static_cast<int>(std::floor(o.mem_fraction * mem_bytes / set_bytes));
  return std::min(want, fit);
}

DecodeBench::DecodeBench(std::unique_ptr<State> s) : s_(std::move(s)) {}
DecodeBench::~DecodeBench() = default;

absl::StatusOr<std::unique_ptr<DecodeBench>> DecodeBench::Create(Runtime& rt, const BenchShape& shape,
                                                                 const BenchOptions& o) {
  if (shape.problem.mode != Mode::kDecode) return absl::InvalidArgumentError("only decode shapes are benchmarked");
  if (shape.batch < 1 || shape.seqlen < 1)
    return absl::InvalidArgumentError(absl::StrCat("batch=", shape.batch, " seqlen=", shape.seqlen, ": must be >= 1"));
  PLX_RETURN_IF_ERROR(rt.MakeCurrent());
  auto st = std::make_unique<State>();
  st->rt = &rt;
  st->shape = shape;
  st->opts = o;
  // A blocking stream: it orders after the legacy-stream memsets and copies (poisoning,
  // uploads) that the driver table offers only in their synchronous-looking, legacy form.
  PLX_CU_RETURN_IF_ERROR(Api(), cuStreamCreate(&st->stream, CU_STREAM_DEFAULT));
  absl::StatusOr<std::unique_ptr<internal::DeviceFill>> fill =
      internal::DeviceFill::Create(rt.device().arch(), rt.device().sm_count);
  if (!fill.ok()) return fill.status();
  st->fill = *std::move(fill);

  st->set_bytes = InputSetBytes(shape);
  const int sets = InputSetsFor(st->set_bytes, rt.device().l2_bytes, double(rt.device().mem_bytes), o);
  if (sets < 1)
    return absl::ResourceExhaustedError(absl::StrFormat(
        "batch %d x seqlen %d: one input set needs %.1f GiB, more than %.0f%% of the device's %.1f GiB",
        shape.batch, shape.seqlen, st->set_bytes / (1 << 30), o.mem_fraction * 100,
        double(rt.device().mem_bytes) / (1 << 30)));
  const Problem& p = shape.problem;
  st->out_elems = size_t(shape.batch) * p.num_q_heads * p.head_dim;
  PLX_RETURN_IF_ERROR(st->out.Alloc(st->out_elems * 2));
  if (p.kv_layout == KvLayout::kPaged) {
    std::vector<int> lens(shape.batch, shape.seqlen);
    PLX_RETURN_IF_ERROR(st->lens.Upload(lens.data(), lens.size() * sizeof(int)));
  }
  for (int i = 0; i < sets; ++i) {
    auto set = std::make_unique<InputSet>();
    PLX_RETURN_IF_ERROR(st->MakeSet(i, *set));
    st->sets.push_back(std::move(set));
  }
  if (o.reduced_check) PLX_RETURN_IF_ERROR(st->MakeReduced());
  PLX_CU_RETURN_IF_ERROR(Api(), cuStreamSynchronize(st->stream));
  if (!o.reference_key.empty()) {
    PLX_RETURN_IF_ERROR(internal::Poison(st->out, st->out_elems, p.dtype));
    if (absl::Status s = st->Run(o.reference_key, st->sets[0]->args); !s.ok())
      return absl::Status(s.code(), absl::StrCat("reference variant ", o.reference_key, ": ", s.message()));
    absl::StatusOr<std::vector<double>> full = internal::Download(st->out, st->out_elems, p.dtype);
    if (!full.ok()) return full.status();
    st->full_ref = *std::move(full);
    const ref::ErrorStats self = ref::Compare(st->full_ref, st->full_ref);
    if (self.non_finite > 0)
      return absl::InternalError(absl::StrCat("reference variant ", o.reference_key, " wrote non-finite values"));
  }
  return std::unique_ptr<DecodeBench>(new DecodeBench(std::move(st)));
}

absl::StatusOr<VerifyResult> DecodeBench::Verify(const Variant& v) {
  State& st = *s_;
  const DType t = st.shape.problem.dtype;
  VerifyResult r;
  r.reduced_tol = internal::Tolerance(t);
  if (st.reduced) {
    ReducedCase& c = *st.reduced;
    PLX_RETURN_IF_ERROR(internal::Poison(c.out, c.out_elems, t));
    PLX_RETURN_IF_ERROR(st.Run(v, c.args));
    absl::StatusOr<std::vector<double>> got = internal::Download(c.out, c.out_elems, t);
    if (!got.ok()) return got.status();
    const ref::ErrorStats e = ref::Compare(*got, c.want);
    r.reduced_rel = e.rel_frobenius;
    if (!(e.rel_frobenius <= r.reduced_tol)) {  // NaN-safe
      r.error = absl::StrFormat("reduced shape %s: rel. Frobenius error %.3g vs the float64 reference exceeds %.3g"
                                " (%ld non-finite)", c.name, e.rel_frobenius, r.reduced_tol, e.non_finite);
      return r;
    }
  }
  if (!st.full_ref.empty()) {
    PLX_RETURN_IF_ERROR(internal::Poison(st.out, st.out_elems, t));
    PLX_RETURN_IF_ERROR(st.Run(v, st.sets[0]->args));
    absl::StatusOr<std::vector<double>> got = internal::Download(st.out, st.out_elems, t);
    if (!got.ok()) return got.status();
    const ref::ErrorStats e = ref::Compare(*got, st.full_ref);
    r.full_rel = e.rel_frobenius;
    if (!(e.rel_frobenius <= st.opts.full_tolerance)) {
      r.error = absl::StrFormat("full shape b%d-l%d: rel. Frobenius error %.3g vs %s exceeds %.3g (%ld non-finite)",
                                st.shape.batch, st.shape.seqlen, e.rel_frobenius, st.opts.reference_key,
                                st.opts.full_tolerance, e.non_finite);
      return r;
    }
  }
  r.ok = true;
  return r;
}

absl::StatusOr<Timing> DecodeBench::Time(const std::string& key, int reps) {
  DecodeArgs a0 = s_->sets[0]->args;
  a0.variant_key = key;
  return s_->Time(s_->rt->PlanDecode(a0), reps);
}

absl::StatusOr<Timing> DecodeBench::Time(const Variant& v, int reps) {
  return s_->Time(s_->rt->PlanDecode(s_->sets[0]->args, v), reps);
}

absl::StatusOr<Timing> DecodeBench::State::Time(const absl::StatusOr<DecodePlan>& plan, int reps) {
  State& st = *this;
  PLX_RETURN_IF_ERROR(st.rt->MakeCurrent());
  if (!plan.ok()) return plan.status();
  auto pass = [&](CUstream stream) -> absl::Status {
    for (auto& set : st.sets) PLX_RETURN_IF_ERROR(st.rt->RunDecode(*plan, set->args, stream));
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
  t.num_splits = plan->num_splits;
  t.variant = plan->variant.Key();
  t.choice = ToString(plan->choice);
  return t;
}

int DecodeBench::num_sets() const { return static_cast<int>(s_->sets.size()); }

double DecodeBench::bytes_per_launch() const {
  const BenchShape& s = s_->shape;
  return DecodeBytes(s.problem, s.algorithm, s.batch, s.seqlen);
}

nlohmann::json DecodeBench::Info() const {
  const State& st = *s_;
  nlohmann::json j = {{"sets", st.sets.size()},
                      {"set_bytes", st.set_bytes},
                      {"l2_bytes", st.rt->device().l2_bytes},
                      {"bytes_per_launch", bytes_per_launch()}};
  if (st.reduced) j["reduced"] = st.reduced->name;
  if (!st.opts.reference_key.empty()) j["full_reference"] = st.opts.reference_key;
  return j;
}

}  // namespace parallax::search
