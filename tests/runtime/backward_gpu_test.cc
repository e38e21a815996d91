// The prefill backward kernels (codegen/families/prefill_bwd, and on sm_90 devices
// prefill_bwd_sm90 by key) against the float64 reference (ref::PrefillBackward), label gpu:
// the forward runs on the GPU and writes out, lse, tbar and vbar; the backward reads them; dq,
// dr, dk, dv (poisoned first) are compared per gradient by relative Frobenius error. Skips
// without a device (and the sm_90a cases on other devices).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "gpu_harness.h"
#include "parallax/codegen/kernel_family.h"
#include "parallax/codegen/reference.h"
#include "parallax/runtime/backward.h"
#include "parallax/runtime/cuda_driver.h"

namespace parallax::testing {
namespace {

// Starting tolerances of the brief, per gradient; the measured values are printed.
double BwdTolerance(DType t) { return t == DType::kBF16 ? 2e-2 : 5e-3; }
uint16_t NaN16(DType t) { return t == DType::kBF16 ? 0x7fc1 : 0x7e01; }

struct BwdCase {
  DType dtype = DType::kBF16;
  int head_dim = 64, hq = 4, hkv = 4, batch = 2;
  std::vector<int> seqlens_q = {77, 77}, seqlens_k = {77, 77};
  bool varlen = false;
  int window = 0;
  bool causal = true;
  bool learned = true;
  Affine affine = Affine::kPlain;
  double r_scale = 1.0;
  bool capi = false;  // through plx_prefill_backward (its own context) instead of the C++ entry
  // The family default's schedule with stages and the dQ reduction replaced ("" = default):
  // e.g. "s2", "s2-bulk", "s1-det".
  std::string schedule;
  // The sm_90a family (prefill_bwd_sm90) by key instead of the default plan: 1 its default
  // schedule, 2 its other block_m (or, where that is refused, one warpgroup with red.add), 3
  // warp-specialized (warps 12: a producer warpgroup feeding two; kernel_ws.cuh), its stages
  // and dQ reduction varied by the case's seed.
  int sm90 = 0;
  uint64_t seed = 1;
  std::string Name() const {
    std::string lens;
    for (size_t b = 0; b < seqlens_q.size(); ++b) absl::StrAppend(&lens, b ? "_" : "", seqlens_q[b], "of", seqlens_k[b]);
    return absl::StrCat(ToString(dtype), "_d", head_dim, "_h", hq, "x", hkv, "_",
                        !learned ? "none" : affine == Affine::kAmplified ? "amplified" : "plain", "_",
                        !causal ? "noncausal" : window > 0 ? absl::StrCat("win", window) : "causal", "_",
                        varlen ? "varlen" : "padded", "_", lens, capi ? "_capi" : "",
                        schedule.empty() ? "" : "_", absl::StrReplaceAll(schedule, {{"-", ""}}),
                        sm90 == 0 ? "" : sm90 == 1 ? "_sm90" : sm90 == 2 ? "_sm90alt" : "_sm90ws");
  }
};

struct Gradients {
  ref::ErrorStats dq, dr, dk, dv;
  std::string variant;
  std::vector<uint16_t> dq_bits, dr_bits;  // as the kernels wrote them
};

// The default plan's key with its stages and dQ reduction replaced by `schedule`
// ("s2-bulk": stages 2, bulk rows).
std::string WithSchedule(const std::string& key, const std::string& schedule) {
  const size_t s = key.rfind("-s");
  return absl::StrCat(key.substr(0, s + 1), schedule);
}

// The sm_90a family's key for (p, a) and BwdCase::sm90 `mode`: 1 its default schedule; 2 the
// other block_m, else one warpgroup (64 keys) with red.add, else red.add alone; 3 warp-
// specialized with `variant` picking stages 2 or 3 and red.add or bulk rows (the first that
// Validate accepts: bulk rows may not fit shared memory). No fallback to a plain schedule
// for 3: a refusal there is the test's failure.
absl::StatusOr<std::string> Sm90Key(const Problem& p, const Algorithm& a, int mode, uint64_t variant = 0) {
  const KernelFamily* f = FindFamily(Mode::kBackward, MathPath::kWgmma);
  if (f == nullptr) return absl::NotFoundError("no wgmma backward family registered");
  const Schedule def = CanonicalSchedule(p, a, f->Default(p, a));
  std::vector<Schedule> tries;
  if (mode == 3) {
    Schedule s = def;
    s.warps = 12;
    s.stages = 2 + static_cast<int>(variant % 2);
    s.dq_reduce = (variant / 2) % 2 ? Schedule::DqReduce::kBulk : Schedule::DqReduce::kAtomic;
    tries.push_back(s);
    s.dq_reduce = Schedule::DqReduce::kAtomic;
    tries.push_back(s);
    s.stages = 2;
    tries.push_back(s);
    absl::Status last;
    for (const Schedule& t : tries) {
      absl::StatusOr<Variant> v = Variant::Create(p, a, t);
      if (v.ok()) return v->Key();
      last = v.status();
    }
    return last;
  }
  if (mode == 2) {
    Schedule s = def;
    s.block_m = def.block_m == 32 ? 64 : 32;
    tries.push_back(s);
    s = def;
    s.warps = 4;
    s.block_n /= 2;
    s.dq_reduce = Schedule::DqReduce::kAtomic;
    tries.push_back(s);
    s = def;
    s.dq_reduce = Schedule::DqReduce::kAtomic;
    tries.push_back(s);
  }
  tries.push_back(def);
  absl::Status last;
  for (const Schedule& s : tries) {
    absl::StatusOr<Variant> v = Variant::Create(p, a, s);
    if (v.ok()) return v->Key();
    last = v.status();
  }
  return last;
}

Problem BwdProblemOf(const BwdCase& c) {
  Problem p;
  p.mode = Mode::kBackward;
  p.dtype = c.dtype;
  p.head_dim = c.head_dim;
  p.num_q_heads = c.hq;
  p.num_kv_heads = c.hkv;
  p.window = c.window > 0;
  return p;
}
Algorithm BwdAlgorithmOf(const BwdCase& c) {
  return Algorithm{c.learned ? Probe::kLearned : Probe::kNone, c.learned ? c.affine : Affine::kPlain};
}
bool IsSm90(const Runtime& rt) { return rt.device().cc_major == 9 && rt.device().cc_minor == 0; }

#define BWD_CHECK_CU(call, what)                                                   \
  do {                                                                             \
    if (absl::Status s_ = cu::Check((*cu::Driver())->call, what); !s_.ok()) return s_; \
  } while (0)

// Padded host rows [B][lmax][h][D] -> packed [sum lens][h][D] (or unchanged padded).
std::vector<uint16_t> Pack(const std::vector<uint16_t>& src, const std::vector<int>& lens, int lmax, int heads, int d) {
  std::vector<uint16_t> dst;
  const size_t row = size_t(heads) * d;
  for (size_t b = 0; b < lens.size(); ++b)
    dst.insert(dst.end(), src.begin() + b * lmax * row, src.begin() + (b * lmax + lens[b]) * row);
  return dst;
}
// The inverse, as doubles; rows past a sequence's length are 0 (the reference's zeros).
std::vector<double> Unpack(const std::vector<uint16_t>& got, const std::vector<int>& lens, int lmax, int heads, int d,
                           bool packed, DType t) {
  const size_t row = size_t(heads) * d;
  std::vector<double> out(lens.size() * lmax * row, 0.0);
  size_t src = 0;
  for (size_t b = 0; b < lens.size(); ++b) {
    if (!packed) src = b * lmax * row;
    for (size_t x = 0; x < size_t(lens[b]) * row; ++x) out[b * lmax * row + x] = FromHalfBits(got[src + x], t);
    src += size_t(lens[b]) * row;
  }
  return out;
}

// plx_prefill_backward on the same device buffers the C++ arguments `a` name (contiguous
// tensors, so the descriptors carry shapes only), with a context of its own.
plx_tensor Desc(const void* data, plx_dtype t, std::vector<int64_t> shape) {
  plx_tensor d{};
  d.data = const_cast<void*>(data);
  d.dtype = t;
  d.ndim = static_cast<int32_t>(shape.size());
  for (size_t i = 0; i < shape.size(); ++i) d.shape[i] = shape[i];
  return d;
}

absl::Status RunThroughCApi(const BwdCase& c, size_t tokens_q, const PrefillBackwardArgs& a) {
  static plx_context* ctx = [] {
    plx_context_options o;
    plx_context_options_init(&o);
    plx_context* x = nullptr;
    return plx_context_create(&o, &x) == PLX_OK ? x : nullptr;
  }();
  if (ctx == nullptr) return absl::InternalError(absl::StrCat("plx_context_create: ", plx_last_error()));
  const plx_dtype t = c.dtype == DType::kBF16 ? PLX_BF16 : PLX_FP16;
  const int B = c.batch, lq = a.seqlen_q, lk = a.seqlen_k;
  const int64_t T = static_cast<int64_t>(tokens_q);
  int64_t tk = 0;
  for (int x : c.seqlens_k) tk += x;
  const auto rq = [&](const PlxBwdRows& r) {
    return c.varlen ? Desc(r.data, t, {T, c.hq, c.head_dim}) : Desc(r.data, t, {B, lq, c.hq, c.head_dim});
  };
  const auto rk = [&](const PlxBwdRows& r) {
    return c.varlen ? Desc(r.data, t, {tk, c.hkv, c.head_dim}) : Desc(r.data, t, {B, lk, c.hkv, c.head_dim});
  };
  const auto st = [&](const float* p) {
    return c.varlen ? Desc(p, PLX_FLOAT32, {c.hq, T}) : Desc(p, PLX_FLOAT32, {B, c.hq, lq});
  };
  plx_prefill_backward_args x;
  plx_prefill_backward_args_init(&x);
  x.q = rq(a.q); x.k = rk(a.k); x.v = rk(a.v); x.out = rq(a.out); x.dout = rq(a.dout); x.vbar = rq(a.vbar);
  x.dq = rq(a.dq); x.dk = rk(a.dk); x.dv = rk(a.dv);
  if (c.learned) {
    x.r = rq(a.r);
    x.dr = rq(a.dr);
    x.tbar = st(a.tbar);
  }
  x.lse = st(a.lse);
  if (c.varlen) {
    x.cu_seqlens_q = Desc(a.cu_seqlens_q, PLX_INT32, {B + 1});
    x.cu_seqlens_k = Desc(a.cu_seqlens_k, PLX_INT32, {B + 1});
    x.max_seqlen_q = lq;
    x.max_seqlen_k = lk;
  }
  x.window = c.window;
  x.causal = c.causal ? 1 : 0;
  x.affine = c.affine == Affine::kAmplified ? PLX_AFFINE_AMPLIFIED : PLX_AFFINE_PLAIN;
  size_t bytes = 0;
  if (plx_prefill_backward_workspace_size(&x, &bytes) != PLX_OK) return absl::InternalError(plx_last_error());
  if (bytes != a.workspace_bytes)
    return absl::InternalError(absl::StrCat("workspace size ", bytes, " != the C++ entry's ", a.workspace_bytes));
  x.workspace = a.workspace;
  x.workspace_bytes = bytes;
  if (plx_prefill_backward(ctx, &x, nullptr) != PLX_OK) return absl::InternalError(plx_last_error());
  return absl::OkStatus();
}

absl::StatusOr<Gradients> RunBackwardCase(Runtime& rt, const BwdCase& c) {
  std::mt19937_64 rng(c.seed);
  const int B = c.batch, D = c.head_dim, Hq = c.hq, Hkv = c.hkv;
  ref::PrefillInputs in = RandomPrefillInputs(rng, B, Hq, Hkv, D, c.seqlens_q, c.seqlens_k, c.causal, c.r_scale);
  const int lq = in.max_seqlen_q, lk = in.max_seqlen_k;
  std::vector<double> dout = RandomRows(rng, size_t(B) * lq * Hq, D, false, 1.0);
  const auto qh = Quantise(in.q, c.dtype), rh = Quantise(in.r, c.dtype), kh = Quantise(in.k, c.dtype);
  const auto vh = Quantise(in.v, c.dtype), doh = Quantise(dout, c.dtype);
  if (!c.learned) in.r.clear();

  ref::Family f;
  f.probe = c.learned ? ref::RefProbe::kLearned : ref::RefProbe::kNone;
  f.affine = c.affine == Affine::kAmplified ? ref::RefAffine::kAmplified : ref::RefAffine::kPlain;
  f.window = c.window;
  absl::StatusOr<ref::PrefillGrads> want = ref::PrefillBackward(in, dout, f);
  if (!want.ok()) return want.status();

  // Device tensors: padded [B, L, H, D] or packed [total, H, D].
  std::vector<int> cuq(B + 1, 0), cuk(B + 1, 0);
  for (int b = 0; b < B; ++b) {
    cuq[b + 1] = cuq[b] + c.seqlens_q[b];
    cuk[b + 1] = cuk[b] + c.seqlens_k[b];
  }
  if (!c.varlen && (c.seqlens_q != std::vector<int>(B, lq) || c.seqlens_k != std::vector<int>(B, lk)))
    return absl::InvalidArgumentError("ragged lengths need varlen");
  const auto lay_q = [&](const std::vector<uint16_t>& h) { return c.varlen ? Pack(h, c.seqlens_q, lq, Hq, D) : h; };
  const auto lay_k = [&](const std::vector<uint16_t>& h) { return c.varlen ? Pack(h, c.seqlens_k, lk, Hkv, D) : h; };
  const std::vector<uint16_t> qd = lay_q(qh), rd = lay_q(rh), dod = lay_q(doh), kd = lay_k(kh), vd = lay_k(vh);
  auto q = Put16(qd), r = Put16(rd), k = Put16(kd), v = Put16(vd), dob = Put16(dod);
  auto cq = PutInts(cuq), ck = PutInts(cuk);
  const size_t q_elems = qd.size(), k_elems = kd.size();
  const size_t tokens_q = c.varlen ? size_t(cuq[B]) : size_t(B) * lq;
  DeviceBuffer out(std::max<size_t>(q_elems, 1) * 2), vbar(std::max<size_t>(q_elems, 1) * 2);
  DeviceBuffer lse(std::max<size_t>(tokens_q * Hq, 1) * 4), tbar(std::max<size_t>(tokens_q * Hq, 1) * 4);
  out.Fill16(NaN16(c.dtype), q_elems);
  vbar.Fill16(NaN16(c.dtype), q_elems);

  const int64_t sq_l = int64_t(Hq) * D, sq_b = int64_t(lq) * Hq * D, sk_l = int64_t(Hkv) * D,
                sk_b = int64_t(lk) * Hkv * D;
  // The forward, writing what the backward reads.
  PrefillArgs fa;
  fa.dtype = c.dtype; fa.batch = B; fa.num_q_heads = Hq; fa.num_kv_heads = Hkv; fa.head_dim = D;
  fa.window = c.window; fa.affine = c.affine; fa.causal = c.causal;
  fa.seqlen_q = lq; fa.seqlen_k = lk;
  fa.q = q->get(); fa.r = c.learned ? r->get() : nullptr; fa.k = k->get(); fa.v = v->get(); fa.out = out.get();
  fa.q_stride_b = sq_b; fa.q_stride_l = sq_l; fa.q_stride_h = D;
  fa.r_stride_b = sq_b; fa.r_stride_l = sq_l; fa.r_stride_h = D;
  fa.o_stride_b = sq_b; fa.o_stride_l = sq_l; fa.o_stride_h = D;
  fa.k_stride_b = sk_b; fa.k_stride_l = sk_l; fa.k_stride_h = D;
  fa.v_stride_b = sk_b; fa.v_stride_l = sk_l; fa.v_stride_h = D;
  if (c.varlen) {
    fa.cu_seqlens_q = static_cast<const int*>(cq->get());
    fa.cu_seqlens_k = static_cast<const int*>(ck->get());
    fa.total_q = cuq[B];
    fa.total_k = cuk[B];
  }
  fa.lse = static_cast<float*>(lse.get());
  fa.tbar = static_cast<float*>(tbar.get());
  fa.vbar = vbar.get();
  if (absl::Status s = rt.Prefill(fa, nullptr); !s.ok()) return s;
  BWD_CHECK_CU(cuCtxSynchronize(), "forward");

  // The backward, into poisoned gradients.
  DeviceBuffer dq(std::max<size_t>(q_elems, 1) * 2), dr(std::max<size_t>(q_elems, 1) * 2);
  DeviceBuffer dk(std::max<size_t>(k_elems, 1) * 2), dv(std::max<size_t>(k_elems, 1) * 2);
  dq.Fill16(NaN16(c.dtype), q_elems);
  dr.Fill16(NaN16(c.dtype), q_elems);
  dk.Fill16(NaN16(c.dtype), k_elems);
  dv.Fill16(NaN16(c.dtype), k_elems);
  PrefillBackwardArgs a;
  a.dtype = c.dtype; a.batch = B; a.num_q_heads = Hq; a.num_kv_heads = Hkv; a.head_dim = D;
  const auto rows_q = [&](void* p) { return PlxBwdRows{p, sq_b, sq_l, D}; };
  const auto rows_k = [&](void* p) { return PlxBwdRows{p, sk_b, sk_l, D}; };
  a.q = rows_q(q->get()); a.r = c.learned ? rows_q(r->get()) : PlxBwdRows{};
  a.k = rows_k(k->get()); a.v = rows_k(v->get());
  a.out = rows_q(out.get()); a.dout = rows_q(dob->get()); a.vbar = rows_q(vbar.get());
  a.dq = rows_q(dq.get()); a.dr = c.learned ? rows_q(dr.get()) : PlxBwdRows{};
  a.dk = rows_k(dk.get()); a.dv = rows_k(dv.get());
  a.lse = static_cast<const float*>(lse.get());
  a.tbar = static_cast<const float*>(tbar.get());
  a.seqlen_q = lq; a.seqlen_k = lk;
  if (c.varlen) {
    a.cu_seqlens_q = static_cast<const int*>(cq->get());
    a.cu_seqlens_k = static_cast<const int*>(ck->get());
    a.total_q = cuq[B];
  }
  a.window = c.window; a.causal = c.causal; a.affine = c.affine;
  DeviceBuffer ws(std::max<size_t>(PrefillBackwardWorkspaceBytes(a), 16));
  a.workspace = ws.get();
  a.workspace_bytes = PrefillBackwardWorkspaceBytes(a);
  absl::StatusOr<Variant> plan = PlanPrefillBackward(a);
  if (!plan.ok()) return plan.status();
  if (!c.schedule.empty()) {
    const std::string base = plan->Key();
    a.variant_key = WithSchedule(base, c.schedule);
    plan = PlanPrefillBackward(a);
    if (!plan.ok() && c.schedule[1] == '2') {  // head_dim 256: a second query block does not fit
      a.variant_key = WithSchedule(base, absl::StrCat("s1", c.schedule.substr(2)));
      plan = PlanPrefillBackward(a);
    }
    if (!plan.ok()) return plan.status();
  }
  if (c.sm90) {
    absl::StatusOr<std::string> key = Sm90Key(plan->problem(), plan->algorithm(), c.sm90, c.seed);
    if (!key.ok()) return key.status();
    a.variant_key = *key;
    plan = PlanPrefillBackward(a);
    if (!plan.ok()) return plan.status();
  }
  if (c.capi) {
    if (absl::Status s = RunThroughCApi(c, tokens_q, a); !s.ok()) return s;
  } else if (absl::Status s = RunPrefillBackward(rt, *plan, a, nullptr); !s.ok()) {
    return s;
  }
  BWD_CHECK_CU(cuCtxSynchronize(), "backward");

  std::vector<uint16_t> hq16(q_elems), hk16(k_elems);
  Gradients g;
  g.variant = plan->Key();
  dq.Download(hq16.data(), q_elems * 2);
  g.dq = ref::Compare(Unpack(hq16, c.seqlens_q, lq, Hq, D, c.varlen, c.dtype), want->dq);
  g.dq_bits = hq16;
  if (c.learned) {
    dr.Download(hq16.data(), q_elems * 2);
    g.dr = ref::Compare(Unpack(hq16, c.seqlens_q, lq, Hq, D, c.varlen, c.dtype), want->dr);
    g.dr_bits = hq16;
  }
  dk.Download(hk16.data(), k_elems * 2);
  g.dk = ref::Compare(Unpack(hk16, c.seqlens_k, lk, Hkv, D, c.varlen, c.dtype), want->dk);
  dv.Download(hk16.data(), k_elems * 2);
  g.dv = ref::Compare(Unpack(hk16, c.seqlens_k, lk, Hkv, D, c.varlen, c.dtype), want->dv);
  return g;
}

// Every probe/affine x mask x GQA x head dim; dtype and layout (padded equal lengths, packed
// ragged ones with Lq < Lk and a length-1 sequence) rotate so each of the four pairs meets
// every axis; then head dim 256 and longer sequences.
std::vector<BwdCase> Cases() {
  std::vector<BwdCase> out;
  int i = 0;
  for (int alg = 0; alg < 3; ++alg)
    for (int mask = 0; mask < 3; ++mask)
      for (auto [hq, hkv] : {std::pair{4, 4}, std::pair{8, 2}, std::pair{4, 1}})
        for (int d : {64, 128}) {
          BwdCase c;
          c.learned = alg != 2;
          c.affine = alg == 1 ? Affine::kAmplified : Affine::kPlain;
          c.r_scale = alg == 1 ? 0.02 : 1.0;  // amplified: delta = 1 - (tbar - r.q) stays away from 0
          c.causal = mask != 1;
          c.window = mask == 2 ? 23 : 0;
          c.hq = hq; c.hkv = hkv; c.head_dim = d;
          const int j = i / 2, di = i % 2;  // (probe, mask, GQA) and head dim
          c.dtype = (j + di) % 2 ? DType::kFP16 : DType::kBF16;
          c.varlen = (j / 2 + di) % 2;
          if (c.varlen) {
            c.batch = 3;
            c.seqlens_q = {61, 1, 100};
            c.seqlens_k = {90, 1, 130};
          }
          c.seed = 1000 + i++;
          out.push_back(c);
        }
  for (int alg = 0; alg < 3; ++alg) {
    BwdCase c;
    c.head_dim = 256; c.hq = 4; c.hkv = 2; c.learned = alg != 2;
    c.affine = alg == 1 ? Affine::kAmplified : Affine::kPlain;
    c.r_scale = alg == 1 ? 0.02 : 1.0;
    c.dtype = alg == 1 ? DType::kFP16 : DType::kBF16;
    c.varlen = alg == 0;
    if (c.varlen) { c.batch = 2; c.seqlens_q = {50, 97}; c.seqlens_k = {120, 97}; }
    c.seed = 2000 + alg;
    out.push_back(c);
  }
  BwdCase lng;
  lng.head_dim = 128; lng.hq = 8; lng.hkv = 2; lng.batch = 1; lng.seqlens_q = {700}; lng.seqlens_k = {700};
  lng.seed = 3000;
  out.push_back(lng);
  lng.dtype = DType::kFP16; lng.window = 200; lng.varlen = true; lng.batch = 2;
  lng.seqlens_q = {300, 513}; lng.seqlens_k = {901, 513}; lng.seed = 3001;
  out.push_back(lng);
  // Through the C API: padded and packed, a probe and softmax.
  for (int x = 0; x < 2; ++x) {
    BwdCase c = out[x == 0 ? 2 : 41];
    c.capi = true;
    c.seed += 500;
    out.push_back(c);
  }
  // The other schedules: double-buffered query blocks and the staged / ordered dQ reductions,
  // each over a third of the grid above (every probe, mask, GQA and head dim meets each).
  const size_t grid = out.size();
  const char* kSchedules[] = {"s2", "s2-bulk", "s1-det", "s2-det", "s1-bulk"};
  for (size_t x = 0; x < grid; x += 3) {
    BwdCase c = out[x];
    c.schedule = kSchedules[(x / 3) % 5];
    c.seed += 700;
    out.push_back(c);
  }
  // The sm_90a family (sm_90 devices only): every case of the grid with its default schedule
  // (the C API cases plan their own variant), a third of them with its other block_m, and
  // every one warp-specialized (its stages and dQ reduction varied by the seed): that kernel
  // pipelines across steps, so each member, mask, GQA group and head dim meets it.
  for (size_t x = 0; x < grid; ++x) {
    if (out[x].capi) continue;
    BwdCase c = out[x];
    c.sm90 = 1;
    c.seed += 900;
    out.push_back(c);
    if (x % 3 == 1) {
      c.sm90 = 2;
      c.seed += 50;
      out.push_back(c);
    }
    c.sm90 = 3;
    c.seed += 70 + x;  // seed % 4 walks stages 2, 3 x red.add, bulk over the cases
    out.push_back(c);
  }
  return out;
}

class BackwardGpu : public ::testing::TestWithParam<BwdCase> {
 protected:
  // On sm_90: the sm_90a variants compile in parallel before the cases run (NVRTC takes a
  // few seconds per wgmma kernel; one at a time they would take most of the test's time).
  static void SetUpTestSuite() {
    std::string why;
    Runtime* rt = SharedRuntime(&why);
    if (rt == nullptr || !IsSm90(*rt)) return;
    std::vector<std::string> keys;
    for (const BwdCase& c : Cases())
      if (c.sm90)
        if (absl::StatusOr<std::string> k = Sm90Key(BwdProblemOf(c), BwdAlgorithmOf(c), c.sm90, c.seed); k.ok())
          if (std::find(keys.begin(), keys.end(), *k) == keys.end()) keys.push_back(*k);
    std::atomic<size_t> next{0};
    std::vector<std::thread> pool;
    for (unsigned t = 0; t < std::max(2u, std::thread::hardware_concurrency()); ++t)
      pool.emplace_back([&] {
        for (size_t i; (i = next++) < keys.size();)
          if (absl::StatusOr<Variant> v = Variant::Parse(keys[i]); v.ok()) (void)rt->Load(*v);
      });
    for (auto& th : pool) th.join();
  }
};

TEST_P(BackwardGpu, GradientsMatchTheFloat64Reference) {
  std::string why;
  Runtime* rt = SharedRuntime(&why);
  if (rt == nullptr) {
    GTEST_SKIP() << why;
  }
  const BwdCase& c = GetParam();
  if (c.sm90 && !IsSm90(*rt)) GTEST_SKIP() << "the sm_90a backward runs on sm_90 devices only";
  absl::StatusOr<Gradients> g = RunBackwardCase(*rt, c);
  ASSERT_TRUE(g.ok()) << g.status();
  const double tol = BwdTolerance(c.dtype);
  std::printf("[backward] %s %s: rel frob dq %.3g dr %.3g dk %.3g dv %.3g (max elem dq %.3g dk %.3g dv %.3g)\n",
              c.Name().c_str(), g->variant.c_str(), g->dq.rel_frobenius, g->dr.rel_frobenius, g->dk.rel_frobenius,
              g->dv.rel_frobenius, g->dq.max_rel_element, g->dk.max_rel_element, g->dv.max_rel_element);
  EXPECT_LE(g->dq.rel_frobenius, tol) << "dq, " << g->variant;
  if (c.learned) {
    EXPECT_LE(g->dr.rel_frobenius, tol) << "dr, " << g->variant;
  }
  EXPECT_LE(g->dk.rel_frobenius, tol) << "dk, " << g->variant;
  EXPECT_LE(g->dv.rel_frobenius, tol) << "dv, " << g->variant;
  EXPECT_EQ(g->dq.non_finite + g->dr.non_finite + g->dk.non_finite + g->dv.non_finite, 0) << "unwritten (poison) or NaN";
}

INSTANTIATE_TEST_SUITE_P(Family, BackwardGpu, ::testing::ValuesIn(Cases()),
                         [](const ::testing::TestParamInfo<BwdCase>& i) { return i.param.Name(); });

// The deterministic schedule: two runs on the same inputs write the same bits (many key
// blocks add to each query block: 1,100 keys in blocks of 64, windowed and not, GQA).
TEST(BackwardChecks, DeterministicScheduleIsBitReproducible) {
  std::string why;
  Runtime* rt = SharedRuntime(&why);
  if (rt == nullptr) GTEST_SKIP() << why;
  for (int window : {0, 300}) {
    BwdCase c;
    c.head_dim = 128; c.hq = 8; c.hkv = 2; c.batch = 2; c.varlen = true;
    c.seqlens_q = {1100, 257}; c.seqlens_k = {1100, 600};
    c.window = window;
    c.schedule = "s2-det";
    c.seed = 4000 + window;
    absl::StatusOr<Gradients> first = RunBackwardCase(*rt, c), second = RunBackwardCase(*rt, c);
    ASSERT_TRUE(first.ok()) << first.status();
    ASSERT_TRUE(second.ok()) << second.status();
    EXPECT_LE(first->dq.rel_frobenius, BwdTolerance(c.dtype)) << first->variant;
    EXPECT_LE(first->dr.rel_frobenius, BwdTolerance(c.dtype)) << first->variant;
    EXPECT_TRUE(first->dq_bits == second->dq_bits) << "dq differs between runs, window " << window;
    EXPECT_TRUE(first->dr_bits == second->dr_bits) << "dr differs between runs, window " << window;
    std::printf("[deterministic] window %d %s: dq rel frob %.3g, bits equal over two runs: %d\n", window,
                first->variant.c_str(), first->dq.rel_frobenius,
                int(first->dq_bits == second->dq_bits && first->dr_bits == second->dr_bits));
  }
}

// Host-side refusals name the field (no device needed).
TEST(BackwardChecks, RefusalsNameTheField) {
  PrefillBackwardArgs a;
  a.dtype = DType::kBF16; a.batch = 1; a.num_q_heads = 4; a.num_kv_heads = 2; a.head_dim = 64;
  a.seqlen_q = a.seqlen_k = 16;
  alignas(16) static uint16_t buf[8];
  const PlxBwdRows t{buf, 16 * 4 * 64, 4 * 64, 64};
  a.q = a.k = a.v = a.out = a.dout = a.dq = a.dk = a.dv = t;
  static float stat[4];
  a.lse = stat;
  EXPECT_TRUE(CheckPrefillBackward(a).ok()) << CheckPrefillBackward(a);
  PrefillBackwardArgs b = a;
  b.dk.data = nullptr;
  EXPECT_EQ(CheckPrefillBackward(b).message(), "dk: required (data is NULL)");
  b = a;
  b.r = t;  // a probe needs dr, vbar and tbar
  EXPECT_EQ(CheckPrefillBackward(b).message(), "dr: required (data is NULL)");
  b.dr = t;
  EXPECT_EQ(CheckPrefillBackward(b).message(), "vbar: required with a probe (r given): the forward's vbar");
  b.vbar = t;
  EXPECT_EQ(CheckPrefillBackward(b).message(), "tbar: required with a probe (r given)");
  b = a;
  b.causal = false;
  b.window = 5;
  EXPECT_EQ(CheckPrefillBackward(b).message(), "window: a non-causal backward takes no window");
  b = a;
  b.q.stride_l = 4;
  EXPECT_NE(CheckPrefillBackward(b).message().find("q: strides"), absl::string_view::npos);
  b = a;
  b.cu_seqlens_q = reinterpret_cast<const int*>(stat);
  EXPECT_EQ(CheckPrefillBackward(b).message(),
            "cu_seqlens_k: cu_seqlens_q and cu_seqlens_k are given together or not at all");
  b = a;
  b.variant_key = "bwd-bf16-d128-h4x2-contig-nowin.none-plain.mma-m32-n64-w4-s1";
  absl::StatusOr<Variant> v = PlanPrefillBackward(b);
  ASSERT_FALSE(v.ok());
  EXPECT_NE(v.status().message().find("variant_key: "), std::string::npos) << v.status();
  absl::StatusOr<Variant> def = PlanPrefillBackward(a);
  ASSERT_TRUE(def.ok()) << def.status();
  EXPECT_EQ(def->Key(), "bwd-bf16-d64-h4x2-contig-nowin.none-plain.mma-m64-n64-w4-s1-bulk");  // bulk: measured faster
  // The workspace: fp32 dq accumulators and 8 coefficients per (token, head); dr's with a probe.
  EXPECT_EQ(PrefillBackwardWorkspaceBytes(a), size_t(16) * 4 * (64 + 8) * 4);
}

// The C API's workspace size and a refusal, on the host (no device needed).
TEST(BackwardChecks, TheCApiSizesTheWorkspaceAndNamesBadFields) {
  alignas(16) static uint16_t buf[8];
  static float stat[4];
  plx_prefill_backward_args x;
  plx_prefill_backward_args_init(&x);
  x.q = x.out = x.dout = x.dq = Desc(buf, PLX_BF16, {2, 16, 4, 64});
  x.k = x.v = x.dk = x.dv = Desc(buf, PLX_BF16, {2, 24, 2, 64});
  x.lse = Desc(stat, PLX_FLOAT32, {2, 4, 16});
  size_t bytes = 0;
  ASSERT_EQ(plx_prefill_backward_workspace_size(&x, &bytes), PLX_OK) << plx_last_error();
  EXPECT_EQ(bytes, size_t(2) * 16 * 4 * (64 + 8) * 4);
  x.dk.data = nullptr;
  EXPECT_EQ(plx_prefill_backward_workspace_size(&x, &bytes), PLX_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(plx_last_error()).find("dk: data is NULL"), std::string::npos) << plx_last_error();
  x.dk = x.k;
  x.r = x.q;  // a probe: dr, vbar and tbar become required
  EXPECT_EQ(plx_prefill_backward_workspace_size(&x, &bytes), PLX_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(plx_last_error()).find("vbar: data is NULL"), std::string::npos) << plx_last_error();
  x.r = Desc(nullptr, PLX_BF16, {});
  x.lse = Desc(stat, PLX_FLOAT32, {2, 4, 15});
  EXPECT_EQ(plx_prefill_backward_workspace_size(&x, &bytes), PLX_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(plx_last_error()).find("lse: shape [2, 4, 15]: must be [B, Hq, Lq]"), std::string::npos)
      << plx_last_error();
}

}  // namespace
}  // namespace parallax::testing
