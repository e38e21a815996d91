// Tests of the reference's prefill backward (PrefillBackward): central finite differences of
// L(x) = sum(dout * Prefill(x)) on every element of q, r, k and v, for each member with a
// backward (probe none / learned, affine plain / amplified, guarded or not), causal and not,
// window, GQA, MQA and ragged lengths; the zero gradients of padding; validation.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "parallax/codegen/reference.h"

namespace parallax::ref {
namespace {

using Vec = std::vector<double>;

constexpr double kH = 1e-6;         // central-difference step
constexpr double kRelTol = 1e-6;    // relative Frobenius error per gradient
constexpr double kAbsTol = 1e-7;    // max abs difference per gradient

struct Shape {
  const char* name;
  int hq, hkv;
  bool causal;
  int window;
};
// B = 2, D = 8, ragged: seqlens_q {5, 3} of 6, seqlens_k {7, 3} of 8, so both sequences have
// padded rows and keys, and causal rows of sequence 0 see 3..7 keys.
const Shape kShapes[] = {
    {"gqa2_causal", 4, 2, true, 0},    {"gqa2_noncausal", 4, 2, false, 0},
    {"gqa2_window3", 4, 2, true, 3},   {"mha_causal", 4, 4, true, 0},
    {"mqa_causal", 4, 1, true, 0},
};

Vec Normal(size_t n, std::mt19937_64& g, double scale = 1.0) {
  std::normal_distribution<double> nd;
  Vec x(n);
  for (double& e : x) e = scale * nd(g);
  return x;
}

PrefillInputs MakeInputs(const Shape& s, uint64_t seed, double r_scale, bool with_r = true,
                         std::vector<int> sq = {5, 3}, std::vector<int> sk = {7, 3}) {
  std::mt19937_64 g(seed);
  PrefillInputs in;
  in.batch = static_cast<int>(sq.size());
  in.num_q_heads = s.hq;
  in.num_kv_heads = s.hkv;
  in.head_dim = 8;
  in.max_seqlen_q = *std::max_element(sq.begin(), sq.end()) + 1;
  in.max_seqlen_k = *std::max_element(sk.begin(), sk.end()) + 1;
  in.seqlens_q = std::move(sq);
  in.seqlens_k = std::move(sk);
  in.causal = s.causal;
  const size_t qn = size_t(in.batch) * in.max_seqlen_q * s.hq * 8;
  const size_t kn = size_t(in.batch) * in.max_seqlen_k * s.hkv * 8;
  in.q = Normal(qn, g);
  in.r = Normal(qn, g, r_scale);
  if (!with_r) in.r.clear();
  in.k = Normal(kn, g);
  in.v = Normal(kn, g);
  return in;
}

Vec MakeDout(const PrefillInputs& in, uint64_t seed) {
  std::mt19937_64 g(seed);
  return Normal(in.q.size(), g);  // padded rows too: the backward must ignore them
}

Family Fam(RefProbe probe, RefAffine affine, const Shape& s, double tau = -1.0, double eps = 1e-6) {
  Family f;
  f.probe = probe;
  f.affine = affine;
  f.tau = tau;
  f.window = s.window;
  f.eps = eps;
  return f;
}

double Loss(const PrefillInputs& in, const Vec& dout, const Family& f) {
  absl::StatusOr<Vec> out = Prefill(in, f);
  if (!out.ok()) {
    ADD_FAILURE() << out.status();
    return NAN;
  }
  double l = 0;
  for (size_t i = 0; i < dout.size(); ++i) l += dout[i] * (*out)[i];
  return l;
}

// Central differences of Loss on every element of q, r, k, v.
PrefillGrads FiniteDifferences(PrefillInputs in, const Vec& dout, const Family& f) {
  PrefillGrads fd;
  auto diff = [&](Vec& x, Vec& dx) {
    dx.assign(x.size(), 0.0);
    for (size_t i = 0; i < x.size(); ++i) {
      const double x0 = x[i];
      x[i] = x0 + kH;
      const double lp = Loss(in, dout, f);
      x[i] = x0 - kH;
      const double lm = Loss(in, dout, f);
      x[i] = x0;
      dx[i] = (lp - lm) / (2 * kH);
    }
  };
  diff(in.q, fd.dq);
  diff(in.r, fd.dr);
  diff(in.k, fd.dk);
  diff(in.v, fd.dv);
  return fd;
}

double MaxAbsDiff(const Vec& a, const Vec& b) {
  if (a.size() != b.size()) return INFINITY;
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m;
}

double Norm(const Vec& a) {
  double s = 0;
  for (double e : a) s += e * e;
  return std::sqrt(s);
}

// Backward against finite differences; `nonzero` lists the gradients that must not vanish
// (so the comparison is not vacuous), from "qrkv".
void ExpectMatchesFd(const std::string& name, const PrefillInputs& in, const Vec& dout, const Family& f,
                     const std::string& nonzero = "qrkv") {
  SCOPED_TRACE(name);
  absl::StatusOr<PrefillGrads> got = PrefillBackward(in, dout, f);
  ASSERT_TRUE(got.ok()) << got.status();
  const PrefillGrads fd = FiniteDifferences(in, dout, f);
  const struct {
    char id;
    const Vec& got;
    const Vec& fd;
  } grads[] = {{'q', got->dq, fd.dq}, {'r', got->dr, fd.dr}, {'k', got->dk, fd.dk}, {'v', got->dv, fd.dv}};
  std::string line = name + ":";
  for (const auto& gr : grads) {
    const ErrorStats e = Compare(gr.got, gr.fd);
    const double abs = MaxAbsDiff(gr.got, gr.fd);
    EXPECT_LT(e.rel_frobenius, kRelTol) << "d" << gr.id;
    EXPECT_LT(abs, kAbsTol) << "d" << gr.id;
    if (nonzero.find(gr.id) != std::string::npos) {
      EXPECT_GT(Norm(gr.fd), 1e-2) << "d" << gr.id << " should not vanish";
    }
    char buf[96];
    std::snprintf(buf, sizeof buf, "  d%c rel %.1e abs %.1e (|fd| %.2g)", gr.id, e.rel_frobenius, abs,
                  Norm(gr.fd));
    line += buf;
  }
  std::printf("[ FD ] %s\n", line.c_str());
}

// delta = 1 - (tbar - r.q) of every row with a visible key.
std::vector<double> Deltas(const PrefillInputs& in, const Family& f) {
  absl::StatusOr<PrefillResult> st = PrefillWithStats(in, f);
  EXPECT_TRUE(st.ok()) << st.status();
  std::vector<double> deltas;
  if (!st.ok()) return deltas;
  const int hq = in.num_q_heads, d = in.head_dim, lq = in.max_seqlen_q;
  for (int b = 0; b < in.batch; ++b)
    for (int h = 0; h < hq; ++h)
      for (int i = 0; i < in.seqlens_q[b]; ++i) {
        const size_t si = (size_t(b) * hq + h) * lq + i;
        if (!(st->lse[si] > -INFINITY)) continue;
        const double* q = in.q.data() + ((size_t(b) * lq + i) * hq + h) * d;
        const double* r = in.r.data() + ((size_t(b) * lq + i) * hq + h) * d;
        double rq = 0;
        for (int x = 0; x < d; ++x) rq += r[x] * q[x];
        deltas.push_back(1 - (st->tbar[si] - rq));
      }
  return deltas;
}

// ---------------------------------------------------------------- finite differences

TEST(ReferenceBackward, LearnedPlainMatchesFiniteDifferences) {
  uint64_t seed = 100;
  for (const Shape& s : kShapes) {
    const PrefillInputs in = MakeInputs(s, ++seed, 1.0);
    ExpectMatchesFd(std::string("learned_plain/") + s.name, in, MakeDout(in, ++seed),
                    Fam(RefProbe::kLearned, RefAffine::kPlain, s));
  }
}

TEST(ReferenceBackward, LearnedAmplifiedMatchesFiniteDifferences) {
  uint64_t seed = 200;
  for (const Shape& s : kShapes) {
    const PrefillInputs in = MakeInputs(s, ++seed, 0.1);
    const Family f = Fam(RefProbe::kLearned, RefAffine::kAmplified, s);
    const std::vector<double> deltas = Deltas(in, f);
    ASSERT_FALSE(deltas.empty());
    for (double delta : deltas) ASSERT_GT(std::abs(delta), 0.1) << "delta too close to the guard";
    ExpectMatchesFd(std::string("learned_amplified_r0.1/") + s.name, in, MakeDout(in, ++seed), f);
  }
}

// eps = 10 guards every row: delta is the constant 10 sign(delta), so u = 1/(10 sign(delta))
// and the r.q path (rho) vanishes.
TEST(ReferenceBackward, AmplifiedGuardedMatchesFiniteDifferences) {
  uint64_t seed = 300;
  for (const Shape& s : {kShapes[0], kShapes[2]}) {
    const PrefillInputs in = MakeInputs(s, ++seed, 1.0);
    const Family f = Fam(RefProbe::kLearned, RefAffine::kAmplified, s, -1.0, /*eps=*/10.0);
    const std::vector<double> deltas = Deltas(in, f);
    ASSERT_FALSE(deltas.empty());
    for (double delta : deltas) ASSERT_LT(std::abs(delta), 9.0) << "row not safely guarded";
    ExpectMatchesFd(std::string("learned_amplified_guarded/") + s.name, in, MakeDout(in, ++seed), f);
  }
}

TEST(ReferenceBackward, TauZeroAndExplicitTau) {
  const Shape& s = kShapes[0];
  uint64_t seed = 400;
  for (RefAffine a : {RefAffine::kPlain, RefAffine::kAmplified}) {
    const bool amp = a == RefAffine::kAmplified;
    const PrefillInputs in = MakeInputs(s, ++seed, amp ? 0.1 : 1.0);
    const Vec dout = MakeDout(in, ++seed);
    // tau = 0: uniform weights; q enters only through amplified's r.q.
    ExpectMatchesFd(std::string("tau0/") + (amp ? "amplified" : "plain"), in, dout,
                    Fam(RefProbe::kLearned, a, s, 0.0), amp ? "qrkv" : "rkv");
    if (!amp) {
      absl::StatusOr<PrefillGrads> g = PrefillBackward(in, dout, Fam(RefProbe::kLearned, a, s, 0.0));
      ASSERT_TRUE(g.ok());
      EXPECT_EQ(Norm(g->dq), 0.0);
    }
    ExpectMatchesFd(std::string("tau0.7/") + (amp ? "amplified" : "plain"), in, dout,
                    Fam(RefProbe::kLearned, a, s, 0.7));
  }
}

// Probe none: dr is zero (sized like r), and dq, dk, dv are softmax's, i.e. learned's with r = 0.
TEST(ReferenceBackward, ProbeNoneIsSoftmax) {
  uint64_t seed = 500;
  for (const Shape& s : {kShapes[0], kShapes[1], kShapes[4]}) {
    for (RefAffine a : {RefAffine::kPlain, RefAffine::kAmplified}) {
      const std::string name =
          std::string("none_") + (a == RefAffine::kPlain ? "plain/" : "amplified/") + s.name;
      SCOPED_TRACE(name);
      const PrefillInputs in = MakeInputs(s, ++seed, 1.0);
      const Vec dout = MakeDout(in, ++seed);
      const Family none = Fam(RefProbe::kNone, a, s);
      ExpectMatchesFd(name, in, dout, none, "qkv");
      absl::StatusOr<PrefillGrads> g = PrefillBackward(in, dout, none);
      ASSERT_TRUE(g.ok()) << g.status();
      ASSERT_EQ(g->dr.size(), in.r.size());
      EXPECT_EQ(Norm(g->dr), 0.0);

      PrefillInputs zero_r = in;
      std::fill(zero_r.r.begin(), zero_r.r.end(), 0.0);
      absl::StatusOr<PrefillGrads> l = PrefillBackward(zero_r, dout, Fam(RefProbe::kLearned, a, s));
      ASSERT_TRUE(l.ok()) << l.status();
      EXPECT_LT(Compare(g->dq, l->dq).rel_frobenius, 1e-14);
      EXPECT_LT(Compare(g->dk, l->dk).rel_frobenius, 1e-14);
      EXPECT_LT(Compare(g->dv, l->dv).rel_frobenius, 1e-14);

      // No r at all: dr is empty, the rest unchanged.
      PrefillInputs no_r = in;
      no_r.r.clear();
      absl::StatusOr<PrefillGrads> n = PrefillBackward(no_r, dout, none);
      ASSERT_TRUE(n.ok()) << n.status();
      EXPECT_TRUE(n->dr.empty());
      EXPECT_EQ(n->dq, g->dq);
      EXPECT_EQ(n->dk, g->dk);
      EXPECT_EQ(n->dv, g->dv);
    }
  }
}

// ---------------------------------------------------------------- zero gradients

// Rows past seqlens_q, keys past seqlens_k, rows without a visible key (causal, Q > L) and an
// empty sequence all get exact zeros; finite differences agree.
TEST(ReferenceBackward, PaddingAndKeylessRowsGetZeroGradients) {
  const Shape s = kShapes[0];
  const PrefillInputs in = MakeInputs(s, 600, 0.1, true, {5, 3, 0}, {7, 2, 4});
  const Vec dout = MakeDout(in, 601);
  for (RefAffine a : {RefAffine::kPlain, RefAffine::kAmplified}) {
    const Family f = Fam(RefProbe::kLearned, a, s);
    absl::StatusOr<PrefillGrads> g = PrefillBackward(in, dout, f);
    ASSERT_TRUE(g.ok()) << g.status();
    const int hq = in.num_q_heads, hkv = in.num_kv_heads, d = in.head_dim;
    int zero_rows = 0, live_rows = 0;
    for (int b = 0; b < in.batch; ++b) {
      const int nq = in.seqlens_q[b], nk = in.seqlens_k[b];
      for (int i = 0; i < in.max_seqlen_q; ++i) {
        const bool dead = i >= nq || nk - nq + i < 0;  // padding, or causal with no key
        for (int h = 0; h < hq; ++h)
          for (int x = 0; x < d; ++x) {
            const size_t e = ((size_t(b) * in.max_seqlen_q + i) * hq + h) * d + x;
            if (dead) {
              EXPECT_EQ(g->dq[e], 0.0) << "b " << b << " row " << i;
              EXPECT_EQ(g->dr[e], 0.0) << "b " << b << " row " << i;
            }
          }
        (dead ? zero_rows : live_rows)++;
      }
      for (int j = nk; j < in.max_seqlen_k; ++j)
        for (int h = 0; h < hkv; ++h)
          for (int x = 0; x < d; ++x) {
            const size_t e = ((size_t(b) * in.max_seqlen_k + j) * hkv + h) * d + x;
            EXPECT_EQ(g->dk[e], 0.0) << "b " << b << " key " << j;
            EXPECT_EQ(g->dv[e], 0.0) << "b " << b << " key " << j;
          }
    }
    EXPECT_GT(zero_rows, 0);
    EXPECT_GT(live_rows, 0);
    ExpectMatchesFd(std::string("padding/") + (a == RefAffine::kPlain ? "plain" : "amplified"), in, dout, f);
  }
}

// ---------------------------------------------------------------- validation

TEST(ReferenceBackward, BadInputs) {
  const Shape& s = kShapes[0];
  const PrefillInputs in = MakeInputs(s, 700, 1.0);
  const Vec dout = MakeDout(in, 701);
  const Family f = Fam(RefProbe::kLearned, RefAffine::kPlain, s);
  ASSERT_TRUE(PrefillBackward(in, dout, f).ok());
  auto expect_invalid = [](const absl::Status& st, const std::string& field) {
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
    EXPECT_NE(std::string(st.message()).find("'" + field + "'"), std::string::npos) << st;
  };
  Vec short_dout = dout;
  short_dout.pop_back();
  expect_invalid(PrefillBackward(in, short_dout, f).status(), "dout");
  expect_invalid(PrefillBackward(in, Vec(), f).status(), "dout");
  PrefillInputs bad = in;
  bad.k.pop_back();
  expect_invalid(PrefillBackward(bad, dout, f).status(), "k");
  bad = in;
  bad.r.clear();
  expect_invalid(PrefillBackward(bad, dout, f).status(), "r");
  bad = in;
  bad.seqlens_q[1] = 7;
  expect_invalid(PrefillBackward(bad, dout, f).status(), "seqlens_q");
  bad = in;
  bad.causal = false;
  Family w = f;
  w.window = 2;
  expect_invalid(PrefillBackward(bad, dout, w).status(), "window");
  Family amp = f;
  amp.affine = RefAffine::kAmplified;
  amp.eps = 0;
  expect_invalid(PrefillBackward(in, dout, amp).status(), "eps");

  Family solved = f;
  solved.probe = RefProbe::kSolved;
  const absl::Status st = PrefillBackward(in, dout, solved).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kUnimplemented) << st;
}

}  // namespace
}  // namespace parallax::ref
