#include "parallax/search/backward_bench.h"

#include <algorithm>
#include <random>
#include <type_traits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench_harness.h"
#include "host_inputs.h"
#include "parallax/codegen/reference.h"
#include "parallax/runtime/backward.h"
#include "parallax/search/prefill_bench.h"

namespace parallax::search {
namespace {

constexpr int kReducedLen = 512;         // reduced shape: keys (and queries) per sequence at most
constexpr double kAmplifiedRScale = 0.02;  // reduced amplified inputs: r scaled, as the GPU test does

// The GPU test's bounds per gradient (tests/runtime/backward_gpu_test.cc, BwdTolerance): the
// gradients are computed from the forward's 16-bit out and vbar and its float32 lse, so they
// carry that rounding on top of their own; measured worst on the H200 3.6e-3 bf16, 5.0e-4 fp16.
double BackwardTolerance(DType t) { return t == DType::kBF16 ? 2e-2 : 5e-3; }

bool LearnedOf(const BackwardShape& s) { return s.algorithm.probe == Probe::kLearned; }

// Rows of q-like tensors (q, r, out, dout, vbar, dq, dr: Lq rows of Hq heads) and k-like ones
// (k, v, dk, dv: Lk rows of Hkv heads), padded [B, L, H, D]; packed calls ignore stride_b.
PlxBwdRows RowsQ(void* p, const Problem& pr, int lq) {
  return PlxBwdRows{p, (long long)lq * pr.num_q_heads * pr.head_dim, (long long)pr.num_q_heads * pr.head_dim,
                    pr.head_dim};
}
PlxBwdRows RowsK(void* p, const Problem& pr, int lk) {
  return PlxBwdRows{p, (long long)lk * pr.num_kv_heads * pr.head_dim, (long long)pr.num_kv_heads * pr.head_dim,
                    pr.head_dim};
}

// The forward that writes what the backward reads: contiguous [B, L, H, D], causal at the end.
PrefillArgs ForwardArgs(const BackwardShape& s, int batch, int lq, int lk, int window) {
  Problem p = s.problem;
  p.mode = Mode::kPrefill;
  PrefillArgs a = internal::ProblemArgs<PrefillArgs>(p, batch);
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

// The backward's arguments for the same shape; tensors come later (BindBackward).
PrefillBackwardArgs BackwardArgs(const BackwardShape& s, int batch, int lq, int lk, int window) {
  PrefillBackwardArgs a;
  a.dtype = s.problem.dtype;
  a.batch = batch;
  a.num_q_heads = s.problem.num_q_heads;
  a.num_kv_heads = s.problem.num_kv_heads;
  a.head_dim = s.problem.head_dim;
  a.seqlen_q = lq;
  a.seqlen_k = lk;
  a.window = window;
  a.causal = true;
  a.affine = s.algorithm.affine;
  return a;
}

// What one forward leaves for the backward (and what it reads).
struct ForwardOut {
  void* out = nullptr;
  void* vbar = nullptr;  // with a probe
  float* lse = nullptr;
  float* tbar = nullptr;  // with a probe
};

// Where the gradients of a call go: slices of one 16-bit buffer, dq | dr | dk | dv, so that
// the harness's one output (poisoned, compared, shared by the sets) holds all four.
struct GradSlices {
  size_t dq = 0, dr = 0, dk = 0, dv = 0, end = 0;  // element offsets; dr == dk without a probe
};
GradSlices SlicesOf(size_t q_elems, size_t k_elems, bool learned) {
  GradSlices g;
  g.dr = q_elems;
  g.dk = g.dr + (learned ? q_elems : 0);
  g.dv = g.dk + k_elems;
  g.end = g.dv + k_elems;
  return g;
}

void* At(void* base, size_t elems) { return static_cast<uint16_t*>(base) + elems; }

// Points a's tensors at the inputs, the forward's results, the gradient slices of `grads`
// (row lengths lq / lk for the padded strides) and the workspace.
void BindBackward(PrefillBackwardArgs& a, const BackwardShape& s, int lq, int lk, const internal::DeviceQrkv& in,
                  void* dout, const ForwardOut& f, void* grads, const GradSlices& g, void* ws, size_t ws_bytes) {
  const Problem& p = s.problem;
  const bool learned = LearnedOf(s);
  a.q = RowsQ(in.q, p, lq);
  a.r = learned ? RowsQ(in.r, p, lq) : PlxBwdRows{};
  a.k = RowsK(in.k, p, lk);
  a.v = RowsK(in.v, p, lk);
  a.out = RowsQ(f.out, p, lq);
  a.dout = RowsQ(dout, p, lq);
  a.vbar = learned ? RowsQ(f.vbar, p, lq) : PlxBwdRows{};
  a.lse = f.lse;
  a.tbar = learned ? f.tbar : nullptr;
  a.dq = RowsQ(At(grads, g.dq), p, lq);
  a.dr = learned ? RowsQ(At(grads, g.dr), p, lq) : PlxBwdRows{};
  a.dk = RowsK(At(grads, g.dk), p, lk);
  a.dv = RowsK(At(grads, g.dv), p, lk);
  a.workspace = ws;
  a.workspace_bytes = ws_bytes;
}

// Float32 workspace bytes for `tokens_q` query tokens: the runtime's rule, asked with a batch
// of one sequence that long (only r's presence matters to it, not where r is).
size_t WorkspaceBytes(const BackwardShape& s, int64_t tokens_q) {
  static char r_present;
  PrefillBackwardArgs a = BackwardArgs(s, 1, static_cast<int>(tokens_q), 0, 0);
  if (LearnedOf(s)) a.r.data = &r_present;
  return PrefillBackwardWorkspaceBytes(a);
}

PrefillShape ForwardShape(const BackwardShape& s) {
  Problem p = s.problem;
  p.mode = Mode::kPrefill;
  return PrefillShape{p, s.algorithm, s.batch, s.seqlen_q, s.seqlen_k, s.window};
}

}  // namespace

double BackwardFlops(const BackwardShape& s) { return 2.5 * PrefillFlops(ForwardShape(s)); }

double BackwardInputSetBytes(const BackwardShape& s) {
  const Problem& p = s.problem;
  const double q_rows = double(s.batch) * s.seqlen_q * p.num_q_heads;
  const double k_rows = double(s.batch) * s.seqlen_k * p.num_kv_heads;
  // q, out, dout (and r, vbar) 16-bit rows; k, v; lse (and tbar) one float a row.
  const double q_like = LearnedOf(s) ? 5 : 3, stats = LearnedOf(s) ? 2 : 1;
  return 2.0 * p.head_dim * (q_like * q_rows + 2.0 * k_rows) + 4.0 * stats * q_rows;
}

namespace internal {
namespace {

class BackwardFamily final : public BenchFamily {
 public:
  BackwardFamily(Runtime& rt, const BackwardShape& s) : rt_(rt), shape_(s) {}

  BenchLayout Layout() const override {
    const BackwardShape& s = shape_;
    BenchLayout l;
    l.name = "bwd";
    l.shape = absl::StrFormat("batch %d x seqlen_q %d x seqlen_k %d", s.batch, s.seqlen_q, s.seqlen_k);
    l.full_name =
        absl::StrCat("b", s.batch, "-q", s.seqlen_q, "-k", s.seqlen_k, s.window ? absl::StrCat("-w", s.window) : "");
    l.dtype = s.problem.dtype;
    l.set_bytes = BackwardInputSetBytes(s);
    l.out_elems = Slices().end;
    // The gradients and the workspace are the sets' to share: keep room for them.
    l.reserved_bytes = double(l.out_elems) * 2 + double(WorkspaceBytes(s, int64_t(s.batch) * s.seqlen_q));
    l.tolerance = BackwardTolerance(s.problem.dtype);
    return l;
  }

  absl::Status MakeSet(SetMaker& m) override {
    const BackwardShape& s = shape_;
    const Problem& p = s.problem;
    const bool learned = LearnedOf(s);
    const int64_t q_rows = int64_t(s.batch) * s.seqlen_q * p.num_q_heads;
    const int64_t k_rows = int64_t(s.batch) * s.seqlen_k * p.num_kv_heads;
    if (workspace_ == nullptr) {  // one for every set, like the gradients
      ws_bytes_ = WorkspaceBytes(s, int64_t(s.batch) * s.seqlen_q);
      PLX_RETURN_IF_ERROR(m.mem().Alloc(std::max<size_t>(ws_bytes_, 16), &workspace_));
    }
    absl::StatusOr<DeviceQrkv> in = m.Qrkv(q_rows, k_rows, p.head_dim, learned);
    if (!in.ok()) return in.status();
    absl::StatusOr<void*> dout = m.Rows(q_rows, p.head_dim, false, m.seed() + 5);
    if (!dout.ok()) return dout.status();
    ForwardOut f;
    PLX_RETURN_IF_ERROR(m.mem().Alloc(size_t(q_rows) * p.head_dim * 2, &f.out));
    PLX_RETURN_IF_ERROR(m.mem().Alloc(size_t(q_rows) * 4, &f.lse));
    if (learned) {
      PLX_RETURN_IF_ERROR(m.mem().Alloc(size_t(q_rows) * p.head_dim * 2, &f.vbar));
      PLX_RETURN_IF_ERROR(m.mem().Alloc(size_t(q_rows) * 4, &f.tbar));
    }
    // The forward after the fills, on their stream: out and the statistics of these inputs.
    PLX_RETURN_IF_ERROR(Forward(ForwardArgs(s, s.batch, s.seqlen_q, s.seqlen_k, s.window), *in, f, m.stream()));
    PrefillBackwardArgs a = BackwardArgs(s, s.batch, s.seqlen_q, s.seqlen_k, s.window);
    BindBackward(a, s, s.seqlen_q, s.seqlen_k, *in, *dout, f, m.out(), Slices(), workspace_, ws_bytes_);
    sets_.push_back(a);
    return absl::OkStatus();
  }

  // Host-made inputs at a reduced shape, packed along the tokens, the forward on the GPU per
  // run, and the float64 gradients.
  absl::StatusOr<ReducedCase> MakeReduced(DeviceArena& mem, uint64_t seed) override {
    const Problem& p = shape_.problem;
    const bool learned = LearnedOf(shape_);
    const ReducedLengths rl =
        ReducedLengthsOf(shape_.batch, shape_.seqlen_q, shape_.seqlen_k, shape_.window, kReducedLen);
    const int B = rl.batch, D = p.head_dim, Hq = p.num_q_heads, Hkv = p.num_kv_heads;
    const int lq = rl.lq, lk = rl.lk, window = rl.window;
    const std::vector<int>& lens_q = rl.lens_q;
    const std::vector<int>& lens_k = rl.lens_k;
    ReducedCase c;
    c.name = rl.name;
    // Drawn in the order q, r, k, v, dout; r scaled for the amplified affine before rounding.
    std::mt19937_64 rng(seed * 7919 + 29);
    const size_t q_rows = size_t(B) * lq * Hq, k_rows = size_t(B) * lk * Hkv;
    std::vector<double> q = RandomRows(rng, q_rows, D, true), r = RandomRows(rng, q_rows, D, true);
    std::vector<double> k = RandomRows(rng, k_rows, D, true), v = RandomRows(rng, k_rows, D, false);
    std::vector<double> dout = RandomRows(rng, q_rows, D, false);
    if (shape_.algorithm.affine == Affine::kAmplified)
      for (double& x : r) x *= kAmplifiedRScale;
    const std::vector<uint16_t> qh = Quantise(q, p.dtype), rh = Quantise(r, p.dtype), kh = Quantise(k, p.dtype);
    const std::vector<uint16_t> vh = Quantise(v, p.dtype), doh = Quantise(dout, p.dtype);
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
    const size_t tq = size_t(cuq[B]), tk = size_t(cuk[B]);
    DeviceQrkv dev;
    void* dout_dev = nullptr;
    const int* cuq_dev = nullptr;
    const int* cuk_dev = nullptr;
    PLX_RETURN_IF_ERROR(mem.Upload(pack(qh, lens_q, lq, Hq).data(), tq * Hq * D * 2, &dev.q));
    PLX_RETURN_IF_ERROR(mem.Upload(pack(rh, lens_q, lq, Hq).data(), tq * Hq * D * 2, &dev.r));
    PLX_RETURN_IF_ERROR(mem.Upload(pack(kh, lens_k, lk, Hkv).data(), tk * Hkv * D * 2, &dev.k));
    PLX_RETURN_IF_ERROR(mem.Upload(pack(vh, lens_k, lk, Hkv).data(), tk * Hkv * D * 2, &dev.v));
    PLX_RETURN_IF_ERROR(mem.Upload(pack(doh, lens_q, lq, Hq).data(), tq * Hq * D * 2, &dout_dev));
    PLX_RETURN_IF_ERROR(mem.Upload(cuq.data(), (B + 1) * sizeof(int), &cuq_dev));
    PLX_RETURN_IF_ERROR(mem.Upload(cuk.data(), (B + 1) * sizeof(int), &cuk_dev));

    const GradSlices g = SlicesOf(tq * Hq * D, tk * Hkv * D, learned);
    c.out_elems = g.end;
    PLX_RETURN_IF_ERROR(mem.Alloc(c.out_elems * 2, &c.out));
    const size_t ws_bytes = WorkspaceBytes(shape_, int64_t(tq));
    void* ws = nullptr;
    PLX_RETURN_IF_ERROR(mem.Alloc(std::max<size_t>(ws_bytes, 16), &ws));
    // Each run has its forward's results of its own (the padded and packed statistics are laid
    // out differently); the gradient slices are shared, at the packed offsets, so each run's
    // gradients of sequence 0 sit where the reference's are.
    auto forward_out = [&](size_t rows) -> absl::StatusOr<ForwardOut> {
      ForwardOut f;
      PLX_RETURN_IF_ERROR(mem.Alloc(rows * Hq * D * 2, &f.out));
      PLX_RETURN_IF_ERROR(mem.Alloc(rows * Hq * D * 2, &f.vbar));
      PLX_RETURN_IF_ERROR(mem.Alloc(rows * Hq * 4, &f.lse));
      PLX_RETURN_IF_ERROR(mem.Alloc(rows * Hq * 4, &f.tbar));
      if (!learned) f.vbar = f.tbar = nullptr;
      return f;
    };
    auto parts = [&](size_t rows_q, size_t rows_k) {
      std::vector<ReducedPart> out = {{"dq", g.dq, rows_q * Hq * D}};
      if (learned) out.push_back({"dr", g.dr, rows_q * Hq * D});
      out.push_back({"dk", g.dk, rows_k * Hkv * D});
      out.push_back({"dv", g.dv, rows_k * Hkv * D});
      return out;
    };
    if (B == 2) {  // both sequences, packed, through cu_seqlens
      absl::StatusOr<ForwardOut> f = forward_out(tq);
      if (!f.ok()) return f.status();
      PrefillArgs fa = ForwardArgs(shape_, 2, lq, lk, window);
      fa.cu_seqlens_q = cuq_dev;
      fa.cu_seqlens_k = cuk_dev;
      fa.total_q = cuq[B];
      fa.total_k = cuk[B];
      PLX_RETURN_IF_ERROR(Forward(fa, dev, *f, nullptr));
      PrefillBackwardArgs a = BackwardArgs(shape_, 2, lq, lk, window);
      BindBackward(a, shape_, lq, lk, dev, dout_dev, *f, c.out, g, ws, ws_bytes);
      a.cu_seqlens_q = cuq_dev;
      a.cu_seqlens_k = cuk_dev;
      a.total_q = cuq[B];
      reduced_.push_back(a);
      c.runs.push_back(ReducedRun{0, "varlen", parts(tq, tk)});
    }
    {  // the first sequence through the padded path the timing takes: packed sequence 0 starts
       // where a batch of one would
      absl::StatusOr<ForwardOut> f = forward_out(size_t(lq));
      if (!f.ok()) return f.status();
      PLX_RETURN_IF_ERROR(Forward(ForwardArgs(shape_, 1, lq, lk, window), dev, *f, nullptr));
      PrefillBackwardArgs a = BackwardArgs(shape_, 1, lq, lk, window);
      BindBackward(a, shape_, lq, lk, dev, dout_dev, *f, c.out, g, ws, ws_bytes);
      reduced_.push_back(a);
      c.runs.push_back(ReducedRun{0, B == 2 ? "padded, sequence 0" : "padded", parts(size_t(lq), size_t(lk))});
    }
    PLX_CU_RETURN_IF_ERROR(Api(), cuCtxSynchronize());

    ref::PrefillInputs in;
    in.batch = B; in.num_q_heads = Hq; in.num_kv_heads = Hkv; in.head_dim = D;
    in.max_seqlen_q = lq; in.max_seqlen_k = lk;
    in.seqlens_q = lens_q; in.seqlens_k = lens_k;
    in.q = std::move(q); in.k = std::move(k); in.v = std::move(v);
    if (learned) in.r = std::move(r);
    absl::StatusOr<ref::PrefillGrads> want = ref::PrefillBackward(in, dout, RefFamilyOf(shape_.algorithm, window));
    if (!want.ok()) return want.status();
    c.want.reserve(c.out_elems);
    for (const std::vector<double>* grad : {&want->dq, &want->dr}) {
      if (grad == &want->dr && !learned) continue;
      const std::vector<double> packed = pack(*grad, lens_q, lq, Hq);
      c.want.insert(c.want.end(), packed.begin(), packed.end());
    }
    for (const std::vector<double>* grad : {&want->dk, &want->dv}) {
      const std::vector<double> packed = pack(*grad, lens_k, lk, Hkv);
      c.want.insert(c.want.end(), packed.begin(), packed.end());
    }
    if (c.want.size() != c.out_elems)
      return absl::InternalError(absl::StrCat("bwd: reference of ", c.want.size(), " values for ", c.out_elems));
    return c;
  }

  absl::StatusOr<Planned> Plan(const Pick& pick, Target t) override {
    Planned out;
    absl::StatusOr<Variant> v = PickedVariant(pick, t, &out.choice);
    if (!v.ok()) return v.status();
    out.variant = v->Key();
    out.run = [this, v = *std::move(v)](Target u, CUstream s) { return RunPrefillBackward(rt_, v, ArgsOf(u), s); };
    return out;
  }

  void AddInfo(nlohmann::json& j) const override { j["flops_per_launch"] = BackwardFlops(shape_); }

 private:
  GradSlices Slices() const {
    const Problem& p = shape_.problem;
    return SlicesOf(size_t(shape_.batch) * shape_.seqlen_q * p.num_q_heads * p.head_dim,
                    size_t(shape_.batch) * shape_.seqlen_k * p.num_kv_heads * p.head_dim, LearnedOf(shape_));
  }

  // The variant a pick names: as given (test-only variants have no key PlanPrefillBackward
  // takes), else the runtime's plan for the key, or without one its tuned-or-default choice
  // (as PrefillBench takes the runtime's prefill plan).
  absl::StatusOr<Variant> PickedVariant(const Pick& pick, Target t, Choice* choice) const {
    *choice = Choice::kExplicit;
    if (pick.variant) return *pick.variant;
    PrefillBackwardArgs a = ArgsOf(t);
    a.variant_key = pick.key;
    return PlanPrefillBackward(rt_, a, choice);
  }

  // Runs the forward of a (its strides and lengths set) on the inputs, into f.
  absl::Status Forward(PrefillArgs a, const DeviceQrkv& in, const ForwardOut& f, CUstream stream) {
    BindQrkv(a, in, LearnedOf(shape_), f.out);
    a.lse = f.lse;
    a.tbar = f.tbar;
    a.vbar = f.vbar;
    if (absl::Status s = rt_.Prefill(a, stream); !s.ok())
      return absl::Status(s.code(), absl::StrCat("the forward for the backward's statistics: ", s.message()));
    return absl::OkStatus();
  }

  const PrefillBackwardArgs& ArgsOf(Target t) const {
    return t.kind == Target::kSet ? sets_[t.index] : reduced_[t.index];
  }

  Runtime& rt_;
  const BackwardShape shape_;
  std::vector<PrefillBackwardArgs> sets_;
  std::vector<PrefillBackwardArgs> reduced_;  // per reduced run
  void* workspace_ = nullptr;                 // the sets' (shared)
  size_t ws_bytes_ = 0;
};

}  // namespace
}  // namespace internal

BackwardBench::BackwardBench(const BackwardShape& s, std::unique_ptr<internal::BenchHarness> h)
    : Bench(std::move(h)), shape_(s) {}

absl::StatusOr<std::unique_ptr<BackwardBench>> BackwardBench::Create(Runtime& rt, const BackwardShape& shape,
                                                                     const BenchOptions& o) {
  const Problem& p = shape.problem;
  if (p.mode != Mode::kBackward) return absl::InvalidArgumentError("only backward (bwd) shapes are benchmarked here");
  if (p.kv_layout != KvLayout::kContiguous)
    return absl::InvalidArgumentError("kv_layout=paged: the backward reads contiguous K/V only");
  if (shape.batch < 1 || shape.seqlen_k < 1 || shape.seqlen_q < 1 || shape.seqlen_q > shape.seqlen_k)
    return absl::InvalidArgumentError(absl::StrCat("batch=", shape.batch, " seqlen_q=", shape.seqlen_q, " seqlen_k=",
                                                   shape.seqlen_k, ": need batch >= 1 and 1 <= seqlen_q <= seqlen_k"));
  if (shape.window < 0 || p.window != (shape.window > 0))
    return absl::InvalidArgumentError(absl::StrCat("window=", shape.window, ": must be >= 0, and > 0 exactly when the "
                                                   "problem has a window"));
  absl::StatusOr<std::unique_ptr<internal::BenchHarness>> h =
      internal::BenchHarness::Create(rt, std::make_unique<internal::BackwardFamily>(rt, shape), o);
  if (!h.ok()) return h.status();
  return std::unique_ptr<BackwardBench>(new BackwardBench(shape, *std::move(h)));
}

double BackwardBench::flops_per_launch() const { return BackwardFlops(shape_); }

}  // namespace parallax::search
