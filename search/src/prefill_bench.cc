#include "parallax/search/prefill_bench.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <type_traits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench_harness.h"
#include "host_inputs.h"
#include "parallax/codegen/reference.h"

namespace parallax::search {
namespace {

constexpr int kReducedLen = 512;      // reduced shape: keys (and queries) per sequence at most
constexpr double kMinDelta = 0.05;    // amplified rows below this |delta| are not held to the bound

// Sum over n in [1, hi] of min(n, window) (window 0: n).
int64_t PrefixPairs(int64_t hi, int64_t window) {
  if (hi <= 0) return 0;
  if (window <= 0 || hi <= window) return hi * (hi + 1) / 2;
  return window * (window + 1) / 2 + (hi - window) * window;
}

int PagesPerSeq(const Problem& p, int seqlen) { return (seqlen + p.page_size - 1) / p.page_size; }

// Contiguous [B, L, H, D] strides for q/r/out (Lq rows) and k/v (Lk rows), or k/v as pages
// [pages, page_size, Hkv, D] (extend over a paged cache); pointers come later.
PrefillArgs BaseArgs(const PrefillShape& s, int batch, int lq, int lk, int window) {
  const Problem& p = s.problem;
  PrefillArgs a = internal::ProblemArgs<PrefillArgs>(p, batch);
  const int64_t qrow = int64_t(p.num_q_heads) * p.head_dim, kvrow = int64_t(p.num_kv_heads) * p.head_dim;
  a.q_stride_h = a.r_stride_h = a.o_stride_h = a.k_stride_h = a.v_stride_h = p.head_dim;
  a.q_stride_l = a.r_stride_l = a.o_stride_l = qrow;
  a.q_stride_b = a.r_stride_b = a.o_stride_b = lq * qrow;
  a.k_stride_l = a.v_stride_l = kvrow;
  a.k_stride_b = a.v_stride_b = lk * kvrow;
  if (p.kv_layout == KvLayout::kPaged) {
    a.page_size = p.page_size;
    a.block_table_stride = PagesPerSeq(p, lk);
    a.k_stride_b = a.v_stride_b = p.page_size * kvrow;
  }
  a.seqlen_q = lq;
  a.seqlen_k = lk;
  a.window = window;
  a.affine = s.algorithm.affine;
  return a;
}

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

namespace internal {
namespace {

class PrefillFamily final : public BenchFamily {
 public:
  PrefillFamily(Runtime& rt, const PrefillShape& s) : rt_(rt), shape_(s) {}

  BenchLayout Layout() const override {
    const PrefillShape& s = shape_;
    BenchLayout l;
    l.name = "prefill";
    l.shape = absl::StrFormat("batch %d x seqlen_q %d x seqlen_k %d", s.batch, s.seqlen_q, s.seqlen_k);
    l.full_name =
        absl::StrCat("b", s.batch, "-q", s.seqlen_q, "-k", s.seqlen_k, s.window ? absl::StrCat("-w", s.window) : "");
    l.dtype = s.problem.dtype;
    l.set_bytes = PrefillInputSetBytes(s);
    l.out_elems = size_t(s.batch) * s.seqlen_q * s.problem.num_q_heads * s.problem.head_dim;
    l.reserved_bytes = double(l.out_elems) * 2;  // as large as q: the sets must leave room for it
    return l;
  }

  absl::Status MakeSet(SetMaker& m) override {
    const PrefillShape& s = shape_;
    const Problem& p = s.problem;
    const bool paged = p.kv_layout == KvLayout::kPaged;
    const int64_t pages = paged ? int64_t(s.batch) * PagesPerSeq(p, s.seqlen_k) : 0;
    const int64_t kv_tokens = paged ? pages * p.page_size : int64_t(s.batch) * s.seqlen_k;
    absl::StatusOr<DeviceQrkv> in =
        m.Qrkv(int64_t(s.batch) * s.seqlen_q * p.num_q_heads, kv_tokens * p.num_kv_heads, p.head_dim, Learned());
    if (!in.ok()) return in.status();
    PrefillArgs a = BaseArgs(s, s.batch, s.seqlen_q, s.seqlen_k, s.window);
    if (paged) {  // each sequence over shuffled pages of the pool, as an engine's cache ends up
      if (seqused_k_ == nullptr) {
        const std::vector<int> lens(s.batch, s.seqlen_k);
        PLX_RETURN_IF_ERROR(m.mem().Upload(lens.data(), lens.size() * sizeof(int), &seqused_k_));
      }
      std::vector<int> perm(pages);
      std::iota(perm.begin(), perm.end(), 0);
      std::mt19937_64 rng(m.seed() + 5);
      std::shuffle(perm.begin(), perm.end(), rng);
      PLX_RETURN_IF_ERROR(m.mem().Upload(perm.data(), perm.size() * sizeof(int), &a.block_table));
      a.seqused_k = seqused_k_;
      a.total_k = pages;  // the pool: the sm_90a family's TMA maps span it
    }
    BindQrkv(a, *in, Learned(), m.out());
    sets_.push_back(a);
    return absl::OkStatus();
  }

  // Host-made inputs at a reduced shape, packed along the tokens, and their float64 reference.
  absl::StatusOr<ReducedCase> MakeReduced(DeviceArena& mem, uint64_t seed) override {
    const Problem& p = shape_.problem;
    const ReducedLengths rl =
        ReducedLengthsOf(shape_.batch, shape_.seqlen_q, shape_.seqlen_k, shape_.window, kReducedLen);
    const int B = rl.batch, D = p.head_dim, Hq = p.num_q_heads, Hkv = p.num_kv_heads;
    const int lq = rl.lq, lk = rl.lk, window = rl.window;
    const std::vector<int>& lens_q = rl.lens_q;
    const std::vector<int>& lens_k = rl.lens_k;
    ReducedCase c;
    c.name = rl.name;
    std::mt19937_64 rng(seed * 7919 + 23);
    HostQrkv h = RandomQrkv(rng, size_t(B) * lq * Hq, size_t(B) * lk * Hkv, D, p.dtype);
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
    DeviceQrkv dev;
    const int* cuq_dev = nullptr;
    const int* cuk_dev = nullptr;
    PLX_RETURN_IF_ERROR(mem.Upload(pack(h.qh, lens_q, lq, Hq).data(), size_t(cuq[B]) * Hq * D * 2, &dev.q));
    PLX_RETURN_IF_ERROR(mem.Upload(pack(h.rh, lens_q, lq, Hq).data(), size_t(cuq[B]) * Hq * D * 2, &dev.r));
    const bool paged = p.kv_layout == KvLayout::kPaged;
    const int* table_dev = nullptr;
    const int* used_dev = nullptr;
    int64_t num_pages = 0;
    if (paged) {  // shuffled pages, three spare ones, every unfilled slot poisoned
      const HostPages pg = ScatterIntoPages(h.kh, h.vh, lens_k, lk, size_t(Hkv) * D, p.page_size, 3,
                                            PoisonBits(p.dtype), rng);
      num_pages = static_cast<int64_t>(pg.k.size() / (size_t(p.page_size) * Hkv * D));
      PLX_RETURN_IF_ERROR(mem.Upload(pg.k.data(), pg.k.size() * 2, &dev.k));
      PLX_RETURN_IF_ERROR(mem.Upload(pg.v.data(), pg.v.size() * 2, &dev.v));
      PLX_RETURN_IF_ERROR(mem.Upload(pg.table.data(), pg.table.size() * sizeof(int), &table_dev));
      PLX_RETURN_IF_ERROR(mem.Upload(lens_k.data(), lens_k.size() * sizeof(int), &used_dev));
    } else {
      PLX_RETURN_IF_ERROR(mem.Upload(pack(h.kh, lens_k, lk, Hkv).data(), size_t(cuk[B]) * Hkv * D * 2, &dev.k));
      PLX_RETURN_IF_ERROR(mem.Upload(pack(h.vh, lens_k, lk, Hkv).data(), size_t(cuk[B]) * Hkv * D * 2, &dev.v));
    }
    PLX_RETURN_IF_ERROR(mem.Upload(cuq.data(), (B + 1) * sizeof(int), &cuq_dev));
    PLX_RETURN_IF_ERROR(mem.Upload(cuk.data(), (B + 1) * sizeof(int), &cuk_dev));
    // Paged runs read K/V through the block table and seqused_k; q packs as ever.
    const auto bind_kv = [&](PrefillArgs& a) {
      if (!paged) return;
      a.block_table = table_dev;
      a.seqused_k = used_dev;
      a.cu_seqlens_k = nullptr;
      a.total_k = num_pages;  // the pool: the sm_90a family's TMA maps span it
    };
    c.out_elems = size_t(cuq[B]) * Hq * D;
    PLX_RETURN_IF_ERROR(mem.Alloc(c.out_elems * 2, &c.out));
    if (B == 2) {  // both sequences, packed, through cu_seqlens
      PrefillArgs a = BaseArgs(shape_, 2, lq, lk, window);
      BindQrkv(a, dev, Learned(), c.out);
      a.cu_seqlens_q = cuq_dev;
      a.cu_seqlens_k = cuk_dev;
      a.total_q = cuq[B];  // the packed extents: TMA families (sm_90a) need them
      a.total_k = cuk[B];
      bind_kv(a);
      reduced_.push_back(a);
      c.runs.push_back(ReducedRun{c.out_elems, "varlen", {}});
    }
    // The first sequence through the uniform-length path (the one timed): packed sequence 0
    // starts where a batch of one would.
    PrefillArgs uniform = BaseArgs(shape_, 1, lq, lk, window);
    BindQrkv(uniform, dev, Learned(), c.out);
    bind_kv(uniform);
    reduced_.push_back(uniform);
    c.runs.push_back(ReducedRun{size_t(lq) * Hq * D, "uniform", {}});

    ref::PrefillInputs in;
    in.batch = B; in.num_q_heads = Hq; in.num_kv_heads = Hkv; in.head_dim = D;
    in.max_seqlen_q = lq; in.max_seqlen_k = lk;
    in.seqlens_q = lens_q; in.seqlens_k = lens_k;
    in.q = std::move(h.q); in.r = std::move(h.r); in.k = std::move(h.k); in.v = std::move(h.v);
    const ref::Family f = RefFamilyOf(shape_.algorithm, window);
    absl::StatusOr<std::vector<double>> want = ref::Prefill(in, f);
    if (!want.ok()) return want.status();
    c.want = pack(*want, lens_q, lq, Hq);
    c.row = D;
    c.masked.assign(c.want.size() / D, 0);
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
      for (size_t row = 0; row < c.masked.size(); ++row) {
        double num = 0, den = 0;
        for (int d = 0; d < D; ++d) {
          const size_t e = row * D + d;
          num += (pl[e] - so[e]) * (c.want[e] - so[e]);
          den += (c.want[e] - so[e]) * (c.want[e] - so[e]);
        }
        if (den > 0 && std::fabs(num / den) < kMinDelta) c.masked[row] = 1;
      }
    }
    return c;
  }

  absl::StatusOr<Planned> Plan(const Pick& pick, Target t) override {
    PrefillArgs a = ArgsOf(t);
    a.variant_key = pick.variant ? pick.variant->Key() : pick.key;  // the runtime's prefill plans by key
    Planned out;
    absl::StatusOr<Variant> v = rt_.PlanPrefill(a, &out.choice);
    if (!v.ok()) return v.status();
    out.variant = v->Key();
    out.run = [this, v = *std::move(v)](Target u, CUstream s) { return rt_.RunPrefill(v, ArgsOf(u), s); };
    return out;
  }

  void AddInfo(nlohmann::json& j) const override { j["flops_per_launch"] = PrefillFlops(shape_); }

 private:
  bool Learned() const { return shape_.algorithm.probe == Probe::kLearned; }
  const PrefillArgs& ArgsOf(Target t) const { return t.kind == Target::kSet ? sets_[t.index] : reduced_[t.index]; }

  Runtime& rt_;
  const PrefillShape shape_;
  std::vector<PrefillArgs> sets_;
  std::vector<PrefillArgs> reduced_;  // per reduced run
  const int* seqused_k_ = nullptr;     // paged sets: every sequence's key count (shared)
};

}  // namespace
}  // namespace internal

PrefillBench::PrefillBench(const PrefillShape& s, std::unique_ptr<internal::BenchHarness> h)
    : Bench(std::move(h)), shape_(s) {}

absl::StatusOr<std::unique_ptr<PrefillBench>> PrefillBench::Create(Runtime& rt, const PrefillShape& shape,
                                                                   const BenchOptions& o) {
  const Problem& p = shape.problem;
  if (p.mode != Mode::kPrefill) return absl::InvalidArgumentError("only prefill shapes are benchmarked here");
  if (shape.batch < 1 || shape.seqlen_k < 1 || shape.seqlen_q < 1 || shape.seqlen_q > shape.seqlen_k)
    return absl::InvalidArgumentError(absl::StrCat("batch=", shape.batch, " seqlen_q=", shape.seqlen_q, " seqlen_k=",
                                                   shape.seqlen_k, ": need batch >= 1 and 1 <= seqlen_q <= seqlen_k"));
  if (shape.window < 0 || p.window != (shape.window > 0))
    return absl::InvalidArgumentError(absl::StrCat("window=", shape.window, ": must be >= 0, and > 0 exactly when the "
                                                   "problem has a window"));
  absl::StatusOr<std::unique_ptr<internal::BenchHarness>> h =
      internal::BenchHarness::Create(rt, std::make_unique<internal::PrefillFamily>(rt, shape), o);
  if (!h.ok()) return h.status();
  return std::unique_ptr<PrefillBench>(new PrefillBench(shape, *std::move(h)));
}

double PrefillBench::flops_per_launch() const { return PrefillFlops(shape_); }

}  // namespace parallax::search
