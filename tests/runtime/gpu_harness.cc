#include "gpu_harness.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "c_api_internal.h"
#include "parallax/runtime/cuda_driver.h"

namespace parallax::testing {
namespace {

const cu::Api* Api() { return *cu::Driver(); }

void Die(CUresult r, const char* what) {
  if (r != CUDA_SUCCESS) {
    fprintf(stderr, "%s\n", std::string(cu::Check(r, what).message()).c_str());
    std::abort();  // a failed CUDA call in a test harness is not recoverable
  }
}

uint16_t Poison(DType t) { return t == DType::kBF16 ? 0x7fc1 : 0x7e01; }  // NaN payloads


// K/V images of padded [B, lmax, row] sequences in a pool of pages of `ps` rows: pages
// shuffled over the pool, three spare ones, every slot no sequence fills poisoned (NaN), so
// a kernel that reads past a length shows it. The first `shared` pages of every sequence
// b > 0 are sequence 0's (the caller made their contents equal: a shared prefix).
struct PagedKv {
  std::vector<uint16_t> k, v;
  std::vector<int> table;  // [B, per_seq]
  int per_seq = 0;
};
PagedKv ScatterPages(const std::vector<uint16_t>& kh, const std::vector<uint16_t>& vh, const std::vector<int>& lens,
                     int lmax, size_t row, int ps, int shared, uint16_t poison, std::mt19937_64& rng) {
  const int B = static_cast<int>(lens.size());
  PagedKv p;
  p.per_seq = std::max(1, (lmax + ps - 1) / ps);
  const int num_pages = B * p.per_seq + 3;
  std::vector<int> perm(num_pages);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  p.table.resize(size_t(B) * p.per_seq);
  p.k.assign(size_t(num_pages) * ps * row, poison);
  p.v = p.k;
  for (int b = 0; b < B; ++b)
    for (int pg = 0; pg < p.per_seq; ++pg) {
      const bool borrowed = b > 0 && pg < shared;
      const int page = borrowed ? p.table[pg] : perm[b * p.per_seq + pg];
      p.table[size_t(b) * p.per_seq + pg] = page;
      if (borrowed) continue;
      for (int s = 0; s < ps && pg * ps + s < lens[b]; ++s) {
        const size_t src = (size_t(b) * lmax + pg * ps + s) * row, dst = (size_t(page) * ps + s) * row;
        std::copy_n(kh.begin() + src, row, p.k.begin() + dst);
        std::copy_n(vh.begin() + src, row, p.v.begin() + dst);
      }
    }
  return p;
}

ref::Family FamilyOf(bool learned, Affine affine, double tau, int window) {
  ref::Family f;
  f.probe = learned ? ref::RefProbe::kLearned : ref::RefProbe::kNone;
  f.affine = affine == Affine::kAmplified ? ref::RefAffine::kAmplified : ref::RefAffine::kPlain;
  f.tau = tau;
  f.window = window;
  return f;
}

// For amplified cases: zero the rows of `got` and `ref` whose delta is below kMinDelta.
// delta per row comes from the reference itself: amplified - softmax = (plain - softmax)/delta.
template <typename Run>
long MaskIllConditioned(std::vector<double>& got, std::vector<double>& want, int head_dim, Run run_ref) {
  absl::StatusOr<std::vector<double>> plain = run_ref(ref::RefProbe::kLearned, ref::RefAffine::kPlain);
  absl::StatusOr<std::vector<double>> soft = run_ref(ref::RefProbe::kNone, ref::RefAffine::kPlain);
  if (!plain.ok() || !soft.ok()) return 0;
  long masked = 0;
  for (size_t row = 0; row + head_dim <= want.size(); row += head_dim) {
    double num = 0, den = 0;
    for (int d = 0; d < head_dim; ++d) {
      const double a = want[row + d] - (*soft)[row + d], p = (*plain)[row + d] - (*soft)[row + d];
      num += p * a;
      den += a * a;
    }
    if (den == 0) continue;
    if (std::fabs(num / den) < kMinDelta) {
      ++masked;
      for (int d = 0; d < head_dim; ++d) got[row + d] = want[row + d] = 0;
    }
  }
  return masked;
}

// The tail of RunCApi: wait for the launch, then read `out` back.
absl::StatusOr<std::vector<uint16_t>> Collect(const DeviceBuffer& out, size_t count, const char* what) {
  if (absl::Status s = cu::Check(Api()->cuCtxSynchronize(), what); !s.ok()) return s;
  std::vector<uint16_t> h(count);
  out.Download(h.data(), count * 2);
  return h;
}

constexpr uint16_t kNaN16 = 0xffff;  // a NaN in bf16 and fp16 alike

}  // namespace

std::unique_ptr<DeviceBuffer> Put16(const std::vector<uint16_t>& h) {
  auto b = std::make_unique<DeviceBuffer>(std::max<size_t>(h.size(), 1) * 2);
  if (!h.empty()) b->Upload(h.data(), h.size() * 2);
  return b;
}
std::unique_ptr<DeviceBuffer> PutInts(const std::vector<int>& h) {
  auto b = std::make_unique<DeviceBuffer>(std::max<size_t>(h.size(), 1) * 4);
  if (!h.empty()) b->Upload(h.data(), h.size() * 4);
  return b;
}

Problem ProblemOf(const PrefillCase& c) {
  Problem p;
  p.mode = Mode::kPrefill; p.dtype = c.dtype; p.head_dim = c.head_dim;
  p.num_q_heads = c.hq; p.num_kv_heads = c.hkv; p.window = c.window > 0;
  if (c.page_size > 0) {
    p.kv_layout = KvLayout::kPaged;
    p.page_size = c.page_size;
  }
  return p;
}
Algorithm AlgorithmOf(bool learned, Affine affine) { return Algorithm{learned ? Probe::kLearned : Probe::kNone, affine}; }
std::string FmaKey(const Problem& p, const Algorithm& a) {
  for (int bm : {32, 16, 8, 4}) {
    Schedule s;
    s.path = MathPath::kFma; s.block_n = 32; s.warps = 4; s.stages = 2; s.block_m = bm;
    if (auto v = Variant::Create(p, a, s); v.ok()) return v->Key();
  }
  return "";
}
std::string MmaKey(const Problem& p, const Algorithm& a) {
  auto v = Variant::Create(p, a, DefaultSchedule(p, a, /*sm=*/0));
  return v.ok() ? v->Key() : "";
}
std::string FmaKey(const PrefillCase& c) { return FmaKey(ProblemOf(c), AlgorithmOf(c.learned, c.affine)); }
std::string MmaKey(const PrefillCase& c) { return MmaKey(ProblemOf(c), AlgorithmOf(c.learned, c.affine)); }

// Model-like rows: unit RMS for q, r and k (as after RMSNorm), standard normal v.
std::vector<double> RandomRows(std::mt19937_64& rng, size_t rows, int d, bool rms_normalise, double scale) {
  std::normal_distribution<double> n(0.0, 1.0);
  std::vector<double> x(rows * d);
  for (size_t i = 0; i < rows; ++i) {
    double ss = 0;
    for (int j = 0; j < d; ++j) ss += (x[i * d + j] = n(rng)) * x[i * d + j];
    const double f = rms_normalise ? scale / std::sqrt(ss / d) : scale;
    for (int j = 0; j < d; ++j) x[i * d + j] *= f;
  }
  return x;
}

// Rounds to the dtype in place (the reference sees exactly what the kernel reads) and
// returns the 16-bit images.
std::vector<uint16_t> Quantise(std::vector<double>& x, DType t) {
  std::vector<uint16_t> h(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    h[i] = ToHalfBits(x[i], t);
    x[i] = FromHalfBits(h[i], t);
  }
  return h;
}


Runtime* SharedRuntime(std::string* why_not) {
  static absl::StatusOr<std::unique_ptr<Runtime>>* rt =
      new absl::StatusOr<std::unique_ptr<Runtime>>(Runtime::Create(RuntimeOptions{}));
  if (!rt->ok()) {
    *why_not = std::string(rt->status().message());
    return nullptr;
  }
  if (absl::Status s = rt->value()->MakeCurrent(); !s.ok()) {
    *why_not = std::string(s.message());
    return nullptr;
  }
  return rt->value().get();
}

double Tolerance(DType t) { return t == DType::kBF16 ? 1e-2 : 2e-3; }

uint16_t ToHalfBits(double x, DType t) {
  if (t == DType::kFP16) {
    const _Float16 h = static_cast<_Float16>(static_cast<float>(x));
    uint16_t b;
    std::memcpy(&b, &h, 2);
    return b;
  }
  const float f = static_cast<float>(x);
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffff) > 0x7f800000) return 0x7fc0;
  u += 0x7fff + ((u >> 16) & 1);  // round to nearest even
  return static_cast<uint16_t>(u >> 16);
}

double FromHalfBits(uint16_t h, DType t) {
  if (t == DType::kFP16) {
    _Float16 f;
    std::memcpy(&f, &h, 2);
    return static_cast<double>(static_cast<float>(f));
  }
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

DeviceBuffer::DeviceBuffer(size_t bytes) { Die(Api()->cuMemAlloc_v2(&ptr_, bytes), "cuMemAlloc"); }
DeviceBuffer::~DeviceBuffer() {
  if (ptr_) Api()->cuMemFree_v2(ptr_);
}
void DeviceBuffer::Upload(const void* src, size_t bytes) {
  Die(Api()->cuMemcpyHtoD_v2(ptr_, src, bytes), "cuMemcpyHtoD");
}
void DeviceBuffer::Download(void* dst, size_t bytes) const {
  Die(Api()->cuMemcpyDtoH_v2(dst, ptr_, bytes), "cuMemcpyDtoH");
}
void DeviceBuffer::Fill16(uint16_t value, size_t count) {
  Die(Api()->cuMemsetD16_v2(ptr_, value, count), "cuMemsetD16");
}

std::string DecodeCase::Name() const {
  std::string n = absl::StrCat(dtype == DType::kBF16 ? "bf16" : "fp16", "_d", head_dim, "_h", hq, "x", hkv,
                               "_b", batch, queries > 1 ? absl::StrCat("_tq", queries) : "",
                               page_size ? absl::StrCat("_paged", page_size) : "_contig", window ? absl::StrCat("_win", window) : "", learned ? "_learned" : "_none",
                               affine == Affine::kAmplified ? "_amp" : "", "_rs", r_scale,
                               num_splits ? absl::StrCat("_split", num_splits) : "", "_L");
  for (int l : seqlens) absl::StrAppend(&n, "_", l);
  // The schedule of an explicit key ("fma-n64-w4-s2-splitauto-g4").
  if (!key.empty()) absl::StrAppend(&n, "_", absl::StrReplaceAll(key.substr(key.rfind('.') + 1), {{"-", "_"}}));
  return absl::StrReplaceAll(n, {{".", "p"}, {"-", "m"}});
}

std::string PrefillCase::Name() const {
  std::string n = absl::StrCat(dtype == DType::kBF16 ? "bf16" : "fp16", "_d", head_dim, "_h", hq, "x", hkv,
                               "_b", batch, varlen ? "_varlen" : "", window ? absl::StrCat("_win", window) : "",
                               learned ? "_learned" : "_none", affine == Affine::kAmplified ? "_amp" : "");
  for (size_t i = 0; i < seqlens_q.size(); ++i) absl::StrAppend(&n, "_", seqlens_q[i], "of", seqlens_k[i]);
  // The schedule of an explicit key ("mma-m64-n64-w4-s2", "wgmma-m64-n160-w12-s2-pp-pers").
  if (!key.empty()) absl::StrAppend(&n, "_", absl::StrReplaceAll(key.substr(key.rfind('.') + 1), {{"-", "_"}}));
  if (stats) absl::StrAppend(&n, "_stats");
  if (page_size) absl::StrAppend(&n, "_page", page_size, shared_pages ? absl::StrCat("_shared", shared_pages) : "");
  if (vbar) absl::StrAppend(&n, "_vbar");
  if (!causal) absl::StrAppend(&n, "_noncausal");
  return absl::StrReplaceAll(n, {{".", "p"}, {"-", "m"}});
}

absl::StatusOr<CaseResult> RunDecodeCase(Runtime& rt, const DecodeCase& c) {
  std::mt19937_64 rng(c.seed);
  const int B = c.batch, D = c.head_dim, Hq = c.hq, Hkv = c.hkv;
  const int lmax = std::max(1, *std::max_element(c.seqlens.begin(), c.seqlens.end()));
  const int Tq = c.queries;  // q, r, out: [B, Tq, Hq, D]
  ref::DecodeInputs in;
  in.batch = B; in.num_q_heads = Hq; in.num_kv_heads = Hkv; in.head_dim = D; in.max_seqlen = lmax;
  in.seqlens = c.seqlens;
  in.q = RandomRows(rng, size_t(B) * Tq * Hq, D, true, c.q_scale);
  in.r = RandomRows(rng, size_t(B) * Tq * Hq, D, true, c.zero_r ? 0.0 : c.r_scale);
  in.k = RandomRows(rng, size_t(B) * lmax * Hkv, D, true, 1.0);
  in.v = RandomRows(rng, size_t(B) * lmax * Hkv, D, false, 1.0);
  const auto qh = Quantise(in.q, c.dtype), rh = Quantise(in.r, c.dtype);
  const auto kh = Quantise(in.k, c.dtype), vh = Quantise(in.v, c.dtype);

  DecodeArgs a;
  a.dtype = c.dtype; a.batch = B; a.num_q_heads = Hq; a.num_kv_heads = Hkv; a.head_dim = D;
  a.queries = Tq;
  a.q_stride_b = int64_t(Tq) * Hq * D; a.q_stride_t = int64_t(Hq) * D; a.q_stride_h = D;
  a.r_stride_b = a.q_stride_b; a.r_stride_t = a.q_stride_t; a.r_stride_h = D;
  a.o_stride_b = a.q_stride_b; a.o_stride_t = a.q_stride_t; a.o_stride_h = D;
  a.seqlen = lmax;
  a.window = c.window;
  a.affine = c.affine;
  a.qk_scale = static_cast<float>(c.tau);
  a.variant_key = c.key;
  a.num_splits = c.num_splits;

  auto q = Put16(qh), r = Put16(rh);
  std::unique_ptr<DeviceBuffer> k, v, table, lens = PutInts(c.seqlens);
  if (c.page_size == 0) {
    k = Put16(kh);
    v = Put16(vh);
    a.k_stride_0 = int64_t(lmax) * Hkv * D; a.k_stride_1 = int64_t(Hkv) * D; a.k_stride_h = D;
  } else {  // scatter each sequence over shuffled pages, plus unused pages
    const int ps = c.page_size;
    const PagedKv pk = ScatterPages(kh, vh, c.seqlens, lmax, size_t(Hkv) * D, ps, 0, Poison(c.dtype), rng);
    k = Put16(pk.k);
    v = Put16(pk.v);
    table = PutInts(pk.table);
    a.block_table = static_cast<const int*>(table->get());
    a.block_table_stride = pk.per_seq;
    a.page_size = ps;
    a.num_pages = static_cast<int64_t>(pk.k.size() / (size_t(ps) * Hkv * D));
    a.k_stride_0 = int64_t(ps) * Hkv * D; a.k_stride_1 = int64_t(Hkv) * D; a.k_stride_h = D;
  }
  a.v_stride_0 = a.k_stride_0; a.v_stride_1 = a.k_stride_1; a.v_stride_h = a.k_stride_h;
  DeviceBuffer out(size_t(B) * Tq * Hq * D * 2);
  out.Fill16(Poison(c.dtype), size_t(B) * Tq * Hq * D);
  a.q = q->get(); a.r = c.learned ? r->get() : nullptr; a.k = k->get(); a.v = v->get(); a.out = out.get();
  a.seqlens = static_cast<const int*>(lens->get());

  absl::StatusOr<DecodePlan> plan = rt.PlanDecode(a);
  if (!plan.ok()) return plan.status();
  if (absl::Status s = rt.RunDecode(*plan, a, nullptr); !s.ok()) return s;
  if (absl::Status s = cu::Check(Api()->cuCtxSynchronize(), "decode kernel"); !s.ok()) return s;
  std::vector<uint16_t> oh(size_t(B) * Tq * Hq * D);
  out.Download(oh.data(), oh.size() * 2);

  // Several tokens: the reference's prefill of Tq rows against each cache, causal at its end.
  const auto reference = [&](const ref::Family& f) -> absl::StatusOr<std::vector<double>> {
    if (Tq == 1) return ref::Decode(in, f);
    ref::PrefillInputs pin;
    pin.batch = B; pin.num_q_heads = Hq; pin.num_kv_heads = Hkv; pin.head_dim = D;
    pin.max_seqlen_q = Tq; pin.max_seqlen_k = lmax;
    pin.seqlens_q.assign(B, Tq);
    pin.seqlens_k = c.seqlens;
    pin.q = in.q; pin.r = in.r; pin.k = in.k; pin.v = in.v;
    return ref::Prefill(pin, f);
  };
  absl::StatusOr<std::vector<double>> want = reference(FamilyOf(c.learned, c.affine, c.tau, c.window));
  if (!want.ok()) return want.status();
  CaseResult res;
  res.out.resize(oh.size());
  for (size_t i = 0; i < oh.size(); ++i) res.out[i] = FromHalfBits(oh[i], c.dtype);
  std::vector<double> got = res.out;
  if (c.learned && c.affine == Affine::kAmplified)
    res.ill_conditioned_rows = MaskIllConditioned(got, *want, D, [&](ref::RefProbe pr, ref::RefAffine af) {
      ref::Family f = FamilyOf(c.learned, c.affine, c.tau, c.window);
      f.probe = pr;
      f.affine = af;
      return reference(f);
    });
  res.err = ref::Compare(got, *want);
  res.tolerance = Tolerance(c.dtype);
  res.variant = plan->variant.Key();
  res.num_splits = plan->num_splits;
  return res;
}

ref::PrefillInputs RandomPrefillInputs(std::mt19937_64& rng, int batch, int hq, int hkv, int d,
                                       const std::vector<int>& seqlens_q, const std::vector<int>& seqlens_k,
                                       bool causal, double r_scale) {
  const int lq = *std::max_element(seqlens_q.begin(), seqlens_q.end());
  const int lk = *std::max_element(seqlens_k.begin(), seqlens_k.end());
  ref::PrefillInputs in;
  in.batch = batch; in.num_q_heads = hq; in.num_kv_heads = hkv; in.head_dim = d;
  in.max_seqlen_q = lq; in.max_seqlen_k = lk;
  in.seqlens_q = seqlens_q; in.seqlens_k = seqlens_k;
  in.causal = causal;
  in.q = RandomRows(rng, size_t(batch) * lq * hq, d, true, 1.0);
  in.r = RandomRows(rng, size_t(batch) * lq * hq, d, true, r_scale);
  in.k = RandomRows(rng, size_t(batch) * lk * hkv, d, true, 1.0);
  in.v = RandomRows(rng, size_t(batch) * lk * hkv, d, false, 1.0);
  return in;
}

absl::StatusOr<CaseResult> RunPrefillCase(Runtime& rt, const PrefillCase& c) {
  std::mt19937_64 rng(c.seed);
  const int B = c.batch, D = c.head_dim, Hq = c.hq, Hkv = c.hkv;
  ref::PrefillInputs in = RandomPrefillInputs(rng, B, Hq, Hkv, D, c.seqlens_q, c.seqlens_k, c.causal, c.r_scale);
  const int lq = in.max_seqlen_q, lk = in.max_seqlen_k;
  const size_t kv_row = size_t(Hkv) * D;
  if (c.page_size > 0 && c.shared_pages > 0) {  // a prefix every sequence shares with sequence 0
    const size_t n = size_t(c.shared_pages) * c.page_size;
    for (int b = 0; b < B; ++b)
      if (size_t(c.seqlens_k[b]) < n) return absl::InvalidArgumentError("shared_pages: a sequence is shorter");
    for (int b = 1; b < B; ++b) {
      std::copy_n(in.k.begin(), n * kv_row, in.k.begin() + size_t(b) * lk * kv_row);
      std::copy_n(in.v.begin(), n * kv_row, in.v.begin() + size_t(b) * lk * kv_row);
    }
  }
  const auto qh = Quantise(in.q, c.dtype), rh = Quantise(in.r, c.dtype);
  const auto kh = Quantise(in.k, c.dtype), vh = Quantise(in.v, c.dtype);

  PrefillArgs a;
  a.dtype = c.dtype; a.batch = B; a.num_q_heads = Hq; a.num_kv_heads = Hkv; a.head_dim = D;
  a.window = c.window; a.affine = c.affine; a.qk_scale = static_cast<float>(c.tau);
  a.variant_key = c.key;
  a.seqlen_q = lq; a.seqlen_k = lk;
  a.causal = c.causal;
  // Padded [B, L, H, D] buffers; with varlen the same rows are addressed through cu_seqlens
  // offsets into a packed copy.
  std::vector<uint16_t> qd = qh, rd = rh, kd = kh, vd = vh;
  std::vector<int> cuq(B + 1, 0), cuk(B + 1, 0);
  if (c.varlen) {
    auto pack = [&](const std::vector<uint16_t>& src, const std::vector<int>& lens, int lmax, int h,
                    std::vector<int>& cu) {
      std::vector<uint16_t> dst;
      for (int b = 0; b < B; ++b) {
        cu[b + 1] = cu[b] + lens[b];
        const size_t row = size_t(h) * D;
        dst.insert(dst.end(), src.begin() + size_t(b) * lmax * row, src.begin() + (size_t(b) * lmax + lens[b]) * row);
      }
      return dst;
    };
    qd = pack(qh, c.seqlens_q, lq, Hq, cuq);
    rd = pack(rh, c.seqlens_q, lq, Hq, cuq);
    kd = pack(kh, c.seqlens_k, lk, Hkv, cuk);
    vd = pack(vh, c.seqlens_k, lk, Hkv, cuk);
  } else if (B > 1 && (c.seqlens_q != std::vector<int>(B, lq) ||
                       (c.page_size == 0 && c.seqlens_k != std::vector<int>(B, lk)))) {
    return absl::InvalidArgumentError("ragged lengths need varlen=true (ragged keys: or a paged cache)");
  }
  std::unique_ptr<DeviceBuffer> table, used = PutInts(c.seqlens_k);
  if (c.page_size > 0) {  // extend over a paged cache: K/V from the padded images, q as above
    const PagedKv pk = ScatterPages(kh, vh, c.seqlens_k, lk, kv_row, c.page_size, c.shared_pages, Poison(c.dtype), rng);
    kd = pk.k;
    vd = pk.v;
    table = PutInts(pk.table);
    a.block_table = static_cast<const int*>(table->get());
    a.block_table_stride = pk.per_seq;
    a.seqused_k = static_cast<const int*>(used->get());
    a.page_size = c.page_size;
    a.total_k = static_cast<int64_t>(pk.k.size() / (size_t(c.page_size) * kv_row));  // pages: TMA's extent
  }
  auto q = Put16(qd), r = Put16(rd), k = Put16(kd), v = Put16(vd);
  auto cq = PutInts(cuq), ck = PutInts(cuk);
  const size_t out_elems = qd.size();
  DeviceBuffer out(std::max<size_t>(out_elems, 1) * 2);
  out.Fill16(Poison(c.dtype), out_elems);
  DeviceBuffer vbar(std::max<size_t>(out_elems, 1) * 2);  // like out (strides 0: out's)
  if (c.vbar) {
    vbar.Fill16(Poison(c.dtype), out_elems);
    a.vbar = vbar.get();
  }
  a.q = q->get(); a.r = c.learned ? r->get() : nullptr; a.k = k->get(); a.v = v->get(); a.out = out.get();
  a.q_stride_l = int64_t(Hq) * D; a.q_stride_h = D; a.q_stride_b = int64_t(lq) * Hq * D;
  a.r_stride_l = a.q_stride_l; a.r_stride_h = D; a.r_stride_b = a.q_stride_b;
  a.o_stride_l = a.q_stride_l; a.o_stride_h = D; a.o_stride_b = a.q_stride_b;
  a.k_stride_l = int64_t(Hkv) * D; a.k_stride_h = D; a.k_stride_b = int64_t(lk) * Hkv * D;
  if (c.page_size > 0) a.k_stride_b = int64_t(c.page_size) * Hkv * D;  // page stride; slots are the rows
  a.v_stride_l = a.k_stride_l; a.v_stride_h = D; a.v_stride_b = a.k_stride_b;
  if (c.varlen) {
    a.cu_seqlens_q = static_cast<const int*>(cq->get());
    a.total_q = cuq[B];  // the packed extents, so TMA families can take packed calls
    if (c.page_size == 0) {
      a.cu_seqlens_k = static_cast<const int*>(ck->get());
      a.total_k = cuk[B];
    }
  }
  // Row statistics in the default (contiguous) layout: [B, Hq, Lq], packed [Hq, total_q].
  const size_t rows_per_head = c.varlen ? size_t(cuq[B]) : size_t(B) * lq;
  const size_t stat_elems = rows_per_head * Hq;
  DeviceBuffer lse(std::max<size_t>(stat_elems, 1) * 4), tbar(std::max<size_t>(stat_elems, 1) * 4);
  if (c.stats) {
    lse.Fill16(Poison(DType::kBF16), 2 * stat_elems);  // 0x7fc17fc1: a float NaN
    tbar.Fill16(Poison(DType::kBF16), 2 * stat_elems);
    a.lse = static_cast<float*>(lse.get());
    a.tbar = static_cast<float*>(tbar.get());
  }
  absl::StatusOr<Variant> var = rt.PlanPrefill(a);
  if (!var.ok()) return var.status();
  if (absl::Status s = rt.RunPrefill(*var, a, nullptr); !s.ok()) return s;
  if (absl::Status s = cu::Check(Api()->cuCtxSynchronize(), "prefill kernel"); !s.ok()) return s;
  std::vector<uint16_t> oh(out_elems);
  out.Download(oh.data(), oh.size() * 2);

  absl::StatusOr<ref::PrefillResult> ref_all =
      ref::PrefillWithStats(in, FamilyOf(c.learned, c.affine, c.tau, c.window));
  if (!ref_all.ok()) return ref_all.status();
  std::vector<double>* want = &ref_all->out;
  CaseResult res;
  if (c.stats) {
    std::vector<float> gl(stat_elems), gt(stat_elems);
    lse.Download(gl.data(), stat_elems * 4);
    tbar.Download(gt.data(), stat_elems * 4);
    double tbar_peak = 0;
    for (double t : ref_all->tbar) tbar_peak = std::max(tbar_peak, std::fabs(t));
    CaseResult::Stats& st = res.stats;
    for (int b = 0; b < B; ++b)
      for (int h = 0; h < Hq; ++h)
        for (int i = 0; i < c.seqlens_q[b]; ++i) {
          const size_t src = c.varlen ? size_t(h) * rows_per_head + cuq[b] + i : (size_t(b) * Hq + h) * lq + i;
          const size_t dst = (size_t(b) * Hq + h) * lq + i;
          const double l = gl[src], t = gt[src], wl = ref_all->lse[dst], wt = ref_all->tbar[dst];
          ++st.rows;
          if (std::isnan(l) || std::isnan(t)) {
            ++st.non_finite;
          } else if (std::isinf(wl)) {  // no visible key
            st.wrong_exact += !(std::isinf(l) && l < 0 && t == 0.0);
          } else {
            st.lse_err = std::max(st.lse_err, std::fabs(l - wl) / std::max(1.0, std::fabs(wl)));
            if (c.learned)
              st.tbar_err = std::max(st.tbar_err, std::fabs(t - wt) / std::max(1.0, tbar_peak));
            else
              st.wrong_exact += t != 0.0;
          }
        }
  }
  res.out.assign(want->size(), 0.0);
  // Unpack the kernel's rows into the padded [B, Lq, Hq, D] order of the reference.
  auto unpack = [&](const std::vector<uint16_t>& h, std::vector<double>& dst_rows) {
    for (int b = 0; b < B; ++b)
      for (int i = 0; i < c.seqlens_q[b]; ++i) {
        const size_t src = (c.varlen ? size_t(cuq[b] + i) : size_t(b) * lq + i) * Hq * D;
        const size_t dst = (size_t(b) * lq + i) * Hq * D;
        for (size_t e = 0; e < size_t(Hq) * D; ++e) dst_rows[dst + e] = FromHalfBits(h[src + e], c.dtype);
      }
  };
  unpack(oh, res.out);
  if (c.vbar) {
    std::vector<uint16_t> vh(out_elems);
    vbar.Download(vh.data(), vh.size() * 2);
    std::vector<double> got_vbar(want->size(), 0.0);
    unpack(vh, got_vbar);
    res.vbar_err = ref::Compare(got_vbar, ref_all->vbar);
  }
  std::vector<double> got = res.out;
  if (c.learned && c.affine == Affine::kAmplified)
    res.ill_conditioned_rows = MaskIllConditioned(got, *want, D, [&](ref::RefProbe pr, ref::RefAffine af) {
      ref::Family f = FamilyOf(c.learned, c.affine, c.tau, c.window);
      f.probe = pr;
      f.affine = af;
      return ref::Prefill(in, f);
    });
  res.err = ref::Compare(got, *want);
  res.tolerance = Tolerance(c.dtype);
  res.variant = var->Key();
  return res;
}

std::unique_ptr<DeviceBuffer> RandomHalves(std::mt19937_64& rng, size_t count, DType t) {
  std::vector<double> x = RandomRows(rng, count, 1, false, 1.0);
  return Put16(Quantise(x, t));
}

absl::StatusOr<std::vector<uint16_t>> RunCApi(Runtime& rt, const plx_decode_args& a, DeviceBuffer& out,
                                              size_t count) {
  absl::StatusOr<DecodeCall> c = capi::TranslateDecodeCall(a);
  if (!c.ok()) return c.status();
  absl::StatusOr<DecodePlan> plan = rt.PlanDecode(*c);
  if (!plan.ok()) return plan.status();
  out.Fill16(kNaN16, count);
  if (absl::Status s = rt.RunDecode(*plan, *c, nullptr); !s.ok()) return s;
  return Collect(out, count, "decode kernel");
}

absl::StatusOr<std::vector<uint16_t>> RunCApi(Runtime& rt, const plx_prefill_args& a, DeviceBuffer& out,
                                              size_t count) {
  absl::StatusOr<PrefillCall> c = capi::TranslatePrefillArgs(a);
  if (!c.ok()) return c.status();
  absl::StatusOr<Variant> v = rt.PlanPrefill(*c);
  if (!v.ok()) return v.status();
  out.Fill16(kNaN16, count);
  if (absl::Status s = rt.RunPrefill(*v, *c, nullptr); !s.ok()) return s;
  return Collect(out, count, "prefill kernel");
}

std::string WindowSpelling::Name() const {
  auto size = [](int32_t x) { return x == PLX_WINDOW_SIZE_UNSET ? std::string("unset") : absl::StrCat(x); };
  return absl::StrCat("window=", window, " window_size=(", size(left), ", ", size(right), ")");
}

absl::Status CheckWindowSpellings(
    int32_t w, const std::function<absl::StatusOr<std::vector<uint16_t>>(const WindowSpelling&)>& run) {
  constexpr int32_t kUnset = PLX_WINDOW_SIZE_UNSET;
  std::vector<uint16_t> first[2];  // of the window, of no window
  for (int32_t win : {w, 0}) {
    const int32_t left = win == 0 ? -1 : win - 1;
    std::vector<WindowSpelling> spellings = {{win, kUnset, kUnset}, {0, left, 0}, {0, left, -1}};
    if (win > 0) spellings.push_back({win, left, 0});
    std::vector<uint16_t>& ref = first[win == 0];
    for (const WindowSpelling& s : spellings) {
      absl::StatusOr<std::vector<uint16_t>> got = run(s);
      if (!got.ok()) return absl::Status(got.status().code(), absl::StrCat(s.Name(), ": ", got.status().message()));
      const long unwritten = std::count(got->begin(), got->end(), kNaN16);
      if (unwritten > 0) return absl::InternalError(absl::StrCat(s.Name(), ": ", unwritten, " elements unwritten"));
      if (ref.empty()) {
        ref = std::move(*got);
        continue;
      }
      if (got->size() != ref.size() || std::memcmp(got->data(), ref.data(), ref.size() * 2) != 0) {
        long differ = 0;
        for (size_t i = 0; i < std::min(ref.size(), got->size()); ++i) differ += (*got)[i] != ref[i];
        return absl::InternalError(absl::StrCat(s.Name(), " differs from ", spellings[0].Name(), " in ", differ,
                                                " of ", ref.size(), " elements"));
      }
    }
  }
  if (std::memcmp(first[0].data(), first[1].data(), first[0].size() * 2) == 0)
    return absl::InternalError(absl::StrCat("window=", w, " gave the output of no window: choose a narrower one"));
  return absl::OkStatus();
}

}  // namespace parallax::testing
