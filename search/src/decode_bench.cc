#include "parallax/search/decode_bench.h"

#include <algorithm>
#include <numeric>
#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench_harness.h"
#include "host_inputs.h"
#include "parallax/codegen/reference.h"
#include "parallax/search/cost_model.h"

namespace parallax::search {
namespace {

int64_t PagesPerSeq(const Problem& p, int seqlen) { return (seqlen + p.page_size - 1) / p.page_size; }

// Decode arguments for a [B, Tq, Hq, D] query (Tq = problem.queries) and the K/V layout
// strides; pointers come later.
DecodeArgs BaseArgs(const BenchShape& s, int batch, int seqlen) {
  const Problem& p = s.problem;
  DecodeArgs a = internal::ProblemArgs<DecodeArgs>(p, batch);
  a.queries = p.queries;
  a.q_stride_b = a.r_stride_b = a.o_stride_b = int64_t(p.queries) * p.num_q_heads * p.head_dim;
  a.q_stride_t = a.r_stride_t = a.o_stride_t = int64_t(p.num_q_heads) * p.head_dim;
  a.q_stride_h = a.r_stride_h = a.o_stride_h = p.head_dim;
  a.seqlen = seqlen;
  a.window = BenchWindow(p, seqlen);
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

double BytesPerLaunch(const BenchShape& s) { return DecodeBytes(s.problem, s.algorithm, s.batch, s.seqlen); }

}  // namespace

namespace internal {
namespace {

class DecodeFamily final : public BenchFamily {
 public:
  DecodeFamily(Runtime& rt, const BenchShape& s) : rt_(rt), shape_(s) {}

  BenchLayout Layout() const override {
    BenchLayout l;
    l.name = "decode";
    l.shape = absl::StrFormat("batch %d x seqlen %d", shape_.batch, shape_.seqlen);
    l.full_name = absl::StrFormat("b%d-l%d", shape_.batch, shape_.seqlen);
    l.dtype = shape_.problem.dtype;
    l.set_bytes = InputSetBytes(shape_);
    l.out_elems = size_t(shape_.batch) * QueryRows() * shape_.problem.head_dim;
    return l;
  }

  absl::Status MakeSet(SetMaker& m) override {
    const Problem& p = shape_.problem;
    const int B = shape_.batch, L = shape_.seqlen;
    const int64_t pages = p.kv_layout == KvLayout::kPaged ? B * PagesPerSeq(p, L) : 0;
    if (pages > 0 && seqlens_ == nullptr) {  // every sequence has L keys: one copy serves all sets
      const std::vector<int> lens(B, L);
      PLX_RETURN_IF_ERROR(m.mem().Upload(lens.data(), lens.size() * sizeof(int), &seqlens_));
    }
    const int64_t kvrows = (pages > 0 ? pages * p.page_size : int64_t(B) * L) * p.num_kv_heads;
    // r even for probe none: InputSetBytes, by which the tuner sizes its watchdog, counts it.
    absl::StatusOr<DeviceQrkv> in = m.Qrkv(int64_t(B) * QueryRows(), kvrows, p.head_dim, true);
    if (!in.ok()) return in.status();
    DecodeArgs a = BaseArgs(shape_, B, L);
    if (pages > 0) {  // each sequence over shuffled pages of the pool
      std::vector<int> perm(pages);
      std::iota(perm.begin(), perm.end(), 0);
      std::mt19937_64 rng(m.seed() + 5);
      std::shuffle(perm.begin(), perm.end(), rng);
      PLX_RETURN_IF_ERROR(m.mem().Upload(perm.data(), perm.size() * sizeof(int), &a.block_table));
      a.seqlens = seqlens_;
      a.num_pages = pages;
    }
    BindQrkv(a, *in, Learned(), m.out());
    sets_.push_back(a);
    return absl::OkStatus();
  }

  // Host-made inputs at a reduced shape with ragged lengths, and their float64 reference.
  absl::StatusOr<ReducedCase> MakeReduced(DeviceArena& mem, uint64_t seed) override {
    const Problem& p = shape_.problem;
    const int B = std::min(shape_.batch, 2), L = std::min(shape_.seqlen, 2048), D = p.head_dim;
    const int Hq = p.num_q_heads, Hkv = p.num_kv_heads;
    std::vector<int> seqlens = {L};
    if (B == 2) seqlens.push_back(std::max(1, L - L / 3 - 1));  // not a multiple of any tile
    ReducedCase c;
    c.name = absl::StrCat("b", B, "-l", L);
    std::mt19937_64 rng(seed * 7919 + 17);
    HostQrkv h = RandomQrkv(rng, size_t(B) * QueryRows(), size_t(B) * L * Hkv, D, p.dtype);
    DecodeArgs& a = reduced_ = BaseArgs(shape_, B, L);
    DeviceQrkv dev;
    PLX_RETURN_IF_ERROR(mem.Upload(h.qh.data(), h.qh.size() * 2, &dev.q));
    PLX_RETURN_IF_ERROR(mem.Upload(h.rh.data(), h.rh.size() * 2, &dev.r));
    PLX_RETURN_IF_ERROR(mem.Upload(seqlens.data(), seqlens.size() * sizeof(int), &a.seqlens));
    if (p.kv_layout == KvLayout::kPaged) {  // shuffled pages plus unused poisoned ones
      const HostPages pg =
          ScatterIntoPages(h.kh, h.vh, seqlens, L, size_t(Hkv) * D, p.page_size, 3, PoisonBits(p.dtype), rng);
      PLX_RETURN_IF_ERROR(mem.Upload(pg.k.data(), pg.k.size() * 2, &dev.k));
      PLX_RETURN_IF_ERROR(mem.Upload(pg.v.data(), pg.v.size() * 2, &dev.v));
      PLX_RETURN_IF_ERROR(mem.Upload(pg.table.data(), pg.table.size() * sizeof(int), &a.block_table));
      a.num_pages = static_cast<int64_t>(pg.k.size() / (size_t(p.page_size) * Hkv * D));
    } else {
      PLX_RETURN_IF_ERROR(mem.Upload(h.kh.data(), h.kh.size() * 2, &dev.k));
      PLX_RETURN_IF_ERROR(mem.Upload(h.vh.data(), h.vh.size() * 2, &dev.v));
    }
    c.out_elems = size_t(B) * QueryRows() * D;
    PLX_RETURN_IF_ERROR(mem.Alloc(c.out_elems * 2, &c.out));
    BindQrkv(a, dev, Learned(), c.out);
    c.runs = {ReducedRun{c.out_elems, "", {}}};
    absl::StatusOr<std::vector<double>> want;
    if (p.queries == 1) {
      ref::DecodeInputs in;
      in.batch = B; in.num_q_heads = Hq; in.num_kv_heads = Hkv; in.head_dim = D; in.max_seqlen = L;
      in.seqlens = seqlens;
      in.q = std::move(h.q); in.r = std::move(h.r); in.k = std::move(h.k); in.v = std::move(h.v);
      want = ref::Decode(in, RefFamilyOf(shape_.algorithm, a.window));
    } else {  // Tq tokens: the reference's prefill of Tq rows causal at each cache's end
      ref::PrefillInputs in;
      in.batch = B; in.num_q_heads = Hq; in.num_kv_heads = Hkv; in.head_dim = D;
      in.max_seqlen_q = p.queries; in.max_seqlen_k = L;
      in.seqlens_q.assign(B, p.queries);
      in.seqlens_k = seqlens;
      in.q = std::move(h.q); in.r = std::move(h.r); in.k = std::move(h.k); in.v = std::move(h.v);
      want = ref::Prefill(in, RefFamilyOf(shape_.algorithm, a.window));
    }
    if (!want.ok()) return want.status();
    c.want = *std::move(want);
    return c;
  }

  absl::StatusOr<Planned> Plan(const Pick& pick, Target t) override {
    absl::StatusOr<DecodePlan> plan = PlanFor(pick, ArgsOf(t));
    if (!plan.ok()) return plan.status();
    Planned out;
    out.variant = plan->variant.Key();
    out.choice = plan->choice;
    out.num_splits = plan->num_splits;
    out.run = [this, plan = *std::move(plan)](Target u, CUstream s) { return rt_.RunDecode(plan, ArgsOf(u), s); };
    return out;
  }

  void AddInfo(nlohmann::json& j) const override { j["bytes_per_launch"] = BytesPerLaunch(shape_); }

 private:
  bool Learned() const { return shape_.algorithm.probe == Probe::kLearned; }
  int QueryRows() const { return shape_.problem.queries * shape_.problem.num_q_heads; }  // per sequence
  const DecodeArgs& ArgsOf(Target t) const { return t.kind == Target::kSet ? sets_[t.index] : reduced_; }
  absl::StatusOr<DecodePlan> PlanFor(const Pick& pick, DecodeArgs a) {
    if (pick.variant) return rt_.PlanDecode(a, *pick.variant);
    a.variant_key = pick.key;
    return rt_.PlanDecode(a);
  }

  Runtime& rt_;
  const BenchShape shape_;
  std::vector<DecodeArgs> sets_;
  DecodeArgs reduced_;
  const int* seqlens_ = nullptr;  // paged sets' lengths
};

}  // namespace
}  // namespace internal

double InputSetBytes(const BenchShape& s) {
  const Problem& p = s.problem;
  const double kv_rows = (p.kv_layout == KvLayout::kPaged ? double(s.batch) * PagesPerSeq(p, s.seqlen) * p.page_size
                                                           : double(s.batch) * s.seqlen) *
                         p.num_kv_heads;
  return 2.0 * kv_rows * p.head_dim * 2 + 2.0 * s.batch * p.queries * p.num_q_heads * p.head_dim * 2;
}

DecodeBench::DecodeBench(const BenchShape& s, std::unique_ptr<internal::BenchHarness> h)
    : Bench(std::move(h)), shape_(s) {}

absl::StatusOr<std::unique_ptr<DecodeBench>> DecodeBench::Create(Runtime& rt, const BenchShape& shape,
                                                                 const BenchOptions& o) {
  if (shape.problem.mode != Mode::kDecode) return absl::InvalidArgumentError("only decode shapes are benchmarked");
  if (shape.batch < 1 || shape.seqlen < 1)
    return absl::InvalidArgumentError(absl::StrCat("batch=", shape.batch, " seqlen=", shape.seqlen, ": must be >= 1"));
  absl::StatusOr<std::unique_ptr<internal::BenchHarness>> h =
      internal::BenchHarness::Create(rt, std::make_unique<internal::DecodeFamily>(rt, shape), o);
  if (!h.ok()) return h.status();
  return std::unique_ptr<DecodeBench>(new DecodeBench(shape, *std::move(h)));
}

double DecodeBench::bytes_per_launch() const { return BytesPerLaunch(shape_); }

}  // namespace parallax::search
