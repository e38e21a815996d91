// Tests of the float64 CPU reference (parallax::ref) against hand-computed values, the
// identities of ../shared/parallax-family.md and independent re-derivations of each form.
#include "parallax/codegen/reference.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"

namespace parallax::ref {
namespace {

using Vec = std::vector<double>;
constexpr double kPoison = -7.77e33;  // what AttendRow must overwrite

Family Fam(RefProbe probe, RefAffine affine = RefAffine::kPlain, double tau = -1.0) {
  Family f;
  f.probe = probe;
  f.affine = affine;
  f.tau = tau;
  return f;
}
const Family kSoftmax = Fam(RefProbe::kNone);
const Family kPlain = Fam(RefProbe::kLearned);
const Family kAmplified = Fam(RefProbe::kLearned, RefAffine::kAmplified);

// Rows with unit RMS, times `scale`, as the model feeds q, r and k.
Vec RmsRows(int rows, int d, std::mt19937_64& g, double scale = 1.0) {
  std::normal_distribution<double> nd;
  Vec x(static_cast<size_t>(rows) * d);
  for (int i = 0; i < rows; ++i) {
    double ss = 0;
    for (int c = 0; c < d; ++c) ss += (x[i * d + c] = nd(g)) * x[i * d + c];
    const double s = scale / std::sqrt(ss / d);
    for (int c = 0; c < d; ++c) x[i * d + c] *= s;
  }
  return x;
}

// One row against n contiguous keys (stride d); r empty means nullptr.
Vec Row(const Family& f, const Vec& q, const Vec& r, const Vec& k, const Vec& v, int n, int d) {
  Vec out(d, kPoison);
  AttendRow(q.data(), r.empty() ? nullptr : r.data(), k.data(), v.data(), n, d, d, f, out.data());
  return out;
}

double Dot(const double* a, const double* b, int d) {
  double s = 0;
  for (int i = 0; i < d; ++i) s += a[i] * b[i];
  return s;
}

double MaxAbs(const Vec& a) {
  double m = 0;
  for (double x : a) m = std::max(m, std::abs(x));
  return m;
}

// max |a - b| relative to max |b|; infinite on a size mismatch or any non-finite element.
double RelDiff(const Vec& a, const Vec& b) {
  if (a.size() != b.size()) return std::numeric_limits<double>::infinity();
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i]) || !std::isfinite(b[i])) return std::numeric_limits<double>::infinity();
    m = std::max(m, std::abs(a[i] - b[i]));
  }
  return m / std::max(MaxAbs(b), 1e-300);
}

// Normalised softmax weights, computed directly (not through the accumulator).
Vec SoftmaxWeights(const Vec& q, const Vec& k, int n, int d, double tau) {
  Vec w(n);
  for (int j = 0; j < n; ++j) w[j] = tau * Dot(q.data(), &k[j * d], d);
  const double m = *std::max_element(w.begin(), w.end());
  double sum = 0;
  for (double& x : w) sum += (x = std::exp(x - m));
  for (double& x : w) x /= sum;
  return w;
}

Vec Mix(const Vec& coef, const Vec& v, int d) {
  Vec out(d, 0.0);
  for (size_t j = 0; j < coef.size(); ++j)
    for (int c = 0; c < d; ++c) out[c] += coef[j] * v[j * d + c];
  return out;
}

// ---------------------------------------------------------------- hand-computed cases

// Shared tiny case, D = 2, tau = 1, two keys:
//   q = (1, 0.5), r = (0, 1), k0 = (-0.5, 1), k1 = (ln3 + 0.5, -1), v0 = (8, 0), v1 = (0, 8).
//   s1 = q.k = (0, ln3) -> softmax w = (1/4, 3/4);  s2 = r.k = (1, -1);  r.q = 0.5.
//   tbar = 1/4 - 3/4 = -1/2;  vbar = (2, 6);  sum w s2 v = (2, -6);
//   Cov r = (2, -6) - tbar * vbar = (3, -3).
struct Tiny {
  Vec q{1, 0.5}, r{0, 1}, k{-0.5, 1, std::log(3.0) + 0.5, -1}, v{8, 0, 0, 8};
};

TEST(ReferenceHand, Softmax) {
  // out = 1/4 (8, 0) + 3/4 (0, 8) = (2, 6).
  Tiny t;
  const Vec out = Row(Fam(RefProbe::kNone, RefAffine::kPlain, 1.0), t.q, t.r, t.k, t.v, 2, 2);
  EXPECT_NEAR(out[0], 2.0, 1e-12);
  EXPECT_NEAR(out[1], 6.0, 1e-12);
}

TEST(ReferenceHand, ParallaxPlain) {
  // Effective weights w_j (1 - (s2_j - tbar)): 1/4 (1 - 3/2) = -1/8, 3/4 (1 + 1/2) = 9/8.
  // out = -1/8 (8, 0) + 9/8 (0, 8) = (-1, 9)  (= vbar - Cov r).
  Tiny t;
  const Vec out = Row(Fam(RefProbe::kLearned, RefAffine::kPlain, 1.0), t.q, t.r, t.k, t.v, 2, 2);
  EXPECT_NEAR(out[0], -1.0, 1e-12);
  EXPECT_NEAR(out[1], 9.0, 1e-12);
}

TEST(ReferenceHand, ParallaxAmplified) {
  // delta = 1 - (tbar - r.q) = 1 - (-1/2 - 1/2) = 2;  out = vbar - Cov r / 2 = (0.5, 7.5).
  Tiny t;
  const Vec out =
      Row(Fam(RefProbe::kLearned, RefAffine::kAmplified, 1.0), t.q, t.r, t.k, t.v, 2, 2);
  EXPECT_NEAR(out[0], 0.5, 1e-12);
  EXPECT_NEAR(out[1], 7.5, 1e-12);
}

TEST(ReferenceHand, AmplifiedEpsGuard) {
  // tau = 0 -> w = (1/2, 1/2); q = 0 so r.q = 0; r = (1, 0), v0 = (1, 0), v1 = (0, 1).
  Family f = Fam(RefProbe::kLearned, RefAffine::kAmplified, 0.0);
  const Vec q{0, 0}, r{1, 0}, v{1, 0, 0, 1};
  {
    // k = (0.5, 0), (1.5, 0): s2 = (0.5, 1.5), tbar = 1 -> delta = 0 exactly -> +eps (sign(0)=+1).
    // vbar = (0.5, 0.5), sum w s2 v = (0.25, 0.75), Cov r = (-0.25, 0.25).
    // eps = 1e-3: out = vbar - Cov r / 1e-3 = (250.5, -249.5).
    f.eps = 1e-3;
    const Vec out = Row(f, q, r, Vec{0.5, 0, 1.5, 0}, v, 2, 2);
    EXPECT_NEAR(out[0], 250.5, 1e-9);
    EXPECT_NEAR(out[1], -249.5, 1e-9);
  }
  {
    // k1 = (1.5 + 2^-9, 0): tbar = 1 + 2^-10, delta = -2^-10, |delta| < eps = 1e-2 -> -1e-2.
    // Cov r = (0.25 - 0.5 - 2^-11, 0.5 (1.5 + 2^-9) - 0.5 (1 + 2^-10))
    //       = (-0.25 - 2^-11, 0.25 + 2^-11);  out = vbar + 100 Cov r
    //       = (0.5 - 25 - 100/2048, 0.5 + 25 + 100/2048) = (-24.548828125, 25.548828125).
    f.eps = 1e-2;
    const Vec out = Row(f, q, r, Vec{0.5, 0, 1.5 + std::ldexp(1.0, -9), 0}, v, 2, 2);
    EXPECT_NEAR(out[0], -24.548828125, 1e-9);
    EXPECT_NEAR(out[1], 25.548828125, 1e-9);
  }
}

TEST(ReferenceHand, LlaOneDimension) {
  // D = 1, q = 0, tau = 0 (all w = 1), k = (1, -1, 2), v = (1, 2, 3).
  // omega = 3, mu = 2, S = 1 + 1 + 4 + 3 lambda.
  // lambda = 1/3: S = 7, rho = 2/7, delta = 3 - 4/7 = 17/7,
  //   sum (1 - rho k_j) v_j = 5/7 + 18/7 + 9/7 = 32/7 -> out = 32/17.
  // lambda -> 0: rho = 1/3, delta = 7/3, numerator 13/3 -> out = 13/7, which is the intercept
  //   at k = q of the least-squares line through (k, v): the local linear fit LLA is.
  Family f = Fam(RefProbe::kSolved, RefAffine::kPlain, 0.0);
  const Vec q{0}, k{1, -1, 2}, v{1, 2, 3};
  f.lambda = 1.0 / 3.0;
  EXPECT_NEAR(Row(f, q, {}, k, v, 3, 1)[0], 32.0 / 17.0, 1e-12);
  f.lambda = 1e-12;
  EXPECT_NEAR(Row(f, q, {}, k, v, 3, 1)[0], 13.0 / 7.0, 1e-9);
}

TEST(ReferenceHand, NoKeysGivesZeros) {
  Tiny t;
  for (const Family& f : {kSoftmax, kPlain, kAmplified, Fam(RefProbe::kSolved)}) {
    const Vec out = Row(f, t.q, t.r, t.k, t.v, 0, 2);
    EXPECT_EQ(out, Vec(2, 0.0));
  }
}

// ---------------------------------------------------------------- identities

struct RandomRow {
  int n, d;
  Vec q, r, k, v;
  RandomRow(int n_, int d_, uint64_t seed, double r_scale = 1.0) : n(n_), d(d_) {
    std::mt19937_64 g(seed);
    q = RmsRows(1, d, g);
    r = RmsRows(1, d, g, r_scale);
    k = RmsRows(n, d, g);
    v = RmsRows(n, d, g);
  }
};

TEST(ReferenceIdentity, ProbeNoneIsSoftmax) {
  const RandomRow x(37, 64, 1);
  const Vec expect = Mix(SoftmaxWeights(x.q, x.k, x.n, x.d, 1 / 8.0), x.v, x.d);
  EXPECT_LT(RelDiff(Row(kSoftmax, x.q, x.r, x.k, x.v, x.n, x.d), expect), 1e-13);
  EXPECT_LT(RelDiff(Row(kSoftmax, x.q, {}, x.k, x.v, x.n, x.d), expect), 1e-13);
  // Probe none with the amplified affine is still softmax (r treated as 0, delta = 1).
  const Family none_amp = Fam(RefProbe::kNone, RefAffine::kAmplified);
  EXPECT_LT(RelDiff(Row(none_amp, x.q, x.r, x.k, x.v, x.n, x.d), expect), 1e-13);
}

TEST(ReferenceIdentity, ZeroProbeIsSoftmax) {
  const RandomRow x(29, 64, 2);
  const Vec zero(x.d, 0.0);
  const Vec soft = Row(kSoftmax, x.q, {}, x.k, x.v, x.n, x.d);
  EXPECT_LT(RelDiff(Row(kPlain, x.q, zero, x.k, x.v, x.n, x.d), soft), 1e-14);
  EXPECT_LT(RelDiff(Row(kAmplified, x.q, zero, x.k, x.v, x.n, x.d), soft), 1e-14);
  // ...and a nonzero probe really changes the output, so the comparisons above can fail.
  EXPECT_GT(RelDiff(Row(kPlain, x.q, x.r, x.k, x.v, x.n, x.d), soft), 1e-3);
}

TEST(ReferenceIdentity, TauZeroIsUniformAverage) {
  const RandomRow x(13, 16, 3);
  const Vec uniform = Mix(Vec(x.n, 1.0 / x.n), x.v, x.d);
  EXPECT_LT(RelDiff(Row(Fam(RefProbe::kNone, RefAffine::kPlain, 0.0), x.q, {}, x.k, x.v, x.n,
                        x.d),
                    uniform),
            1e-14);
}

// out = sum_j w_j (1 - (s2_j - tbar)) v_j and, amplified, vbar - Cov_w(v,k) r / delta,
// both evaluated from explicit weights.
TEST(ReferenceIdentity, EffectiveWeightsForm) {
  for (double r_scale : {0.1, 1.0, 10.0}) {
    SCOPED_TRACE(r_scale);
    const RandomRow x(41, 64, 4, r_scale);
    const Vec w = SoftmaxWeights(x.q, x.k, x.n, x.d, 1 / 8.0);
    Vec s2(x.n);
    double tbar = 0;
    for (int j = 0; j < x.n; ++j) tbar += w[j] * (s2[j] = Dot(x.r.data(), &x.k[j * x.d], x.d));
    Vec eff(x.n), dev(x.n);
    double eff_sum = 0, eff_min = 1;
    for (int j = 0; j < x.n; ++j) {
      dev[j] = w[j] * (s2[j] - tbar);
      eff[j] = w[j] - dev[j];
      eff_sum += eff[j];
      eff_min = std::min(eff_min, eff[j]);
    }
    EXPECT_NEAR(eff_sum, 1.0, 1e-12);
    if (r_scale >= 1.0) {
      EXPECT_LT(eff_min, 0.0) << "case should exercise negative weights";
    }
    EXPECT_LT(RelDiff(Row(kPlain, x.q, x.r, x.k, x.v, x.n, x.d), Mix(eff, x.v, x.d)), 1e-12);

    const double delta = 1 - (tbar - Dot(x.r.data(), x.q.data(), x.d));
    const Vec vbar = Mix(w, x.v, x.d), cov_r = Mix(dev, x.v, x.d);
    Vec amp(x.d);
    for (int c = 0; c < x.d; ++c) amp[c] = vbar[c] - cov_r[c] / delta;
    EXPECT_LT(RelDiff(Row(kAmplified, x.q, x.r, x.k, x.v, x.n, x.d), amp), 1e-12);
  }
}

// Flash-style split-KV: per-chunk (m, d1, d2, O1, O2), merged by rescaling with exp(m_i - m).
struct Partial {
  double m = -std::numeric_limits<double>::infinity(), d1 = 0, d2 = 0;
  Vec o1, o2;
};

Partial Accumulate(const RandomRow& x, int lo, int hi, double tau) {
  Partial p;
  p.o1.assign(x.d, 0.0);
  p.o2.assign(x.d, 0.0);
  for (int j = lo; j < hi; ++j) p.m = std::max(p.m, tau * Dot(x.q.data(), &x.k[j * x.d], x.d));
  for (int j = lo; j < hi; ++j) {
    const double p1 = std::exp(tau * Dot(x.q.data(), &x.k[j * x.d], x.d) - p.m);
    const double p2 = p1 * Dot(x.r.data(), &x.k[j * x.d], x.d);
    p.d1 += p1;
    p.d2 += p2;
    for (int c = 0; c < x.d; ++c) {
      p.o1[c] += p1 * x.v[j * x.d + c];
      p.o2[c] += p2 * x.v[j * x.d + c];
    }
  }
  return p;
}

Partial Merge(const Partial& a, const Partial& b) {
  Partial p;
  p.m = std::max(a.m, b.m);
  const double sa = std::exp(a.m - p.m), sb = std::exp(b.m - p.m);
  p.d1 = sa * a.d1 + sb * b.d1;
  p.d2 = sa * a.d2 + sb * b.d2;
  p.o1.resize(a.o1.size());
  p.o2.resize(a.o2.size());
  for (size_t c = 0; c < a.o1.size(); ++c) {
    p.o1[c] = sa * a.o1[c] + sb * b.o1[c];
    p.o2[c] = sa * a.o2[c] + sb * b.o2[c];
  }
  return p;
}

TEST(ReferenceIdentity, SplitKvMergeMatchesOnePass) {
  const RandomRow x(53, 32, 5);
  const double tau = 1 / std::sqrt(32.0), rq = Dot(x.r.data(), x.q.data(), x.d);
  const Vec plain = Row(kPlain, x.q, x.r, x.k, x.v, x.n, x.d);
  const Vec amp = Row(kAmplified, x.q, x.r, x.k, x.v, x.n, x.d);
  for (int splits = 1; splits <= 6; ++splits) {
    SCOPED_TRACE(splits);
    Partial acc = Accumulate(x, 0, x.n / splits, tau);
    for (int s = 1; s < splits; ++s)
      acc = Merge(acc, Accumulate(x, s * x.n / splits, (s + 1) * x.n / splits, tau));
    const double tbar = acc.d2 / acc.d1, delta = 1 - (tbar - rq);
    Vec got_plain(x.d), got_amp(x.d);
    for (int c = 0; c < x.d; ++c) {
      const double vbar = acc.o1[c] / acc.d1, cov = acc.o2[c] / acc.d1 - tbar * vbar;
      got_plain[c] = vbar * (1 + tbar) - acc.o2[c] / acc.d1;
      got_amp[c] = vbar - cov / delta;
    }
    EXPECT_LT(RelDiff(got_plain, plain), 1e-12);
    EXPECT_LT(RelDiff(got_amp, amp), 1e-12);
  }
}

TEST(ReferenceIdentity, LargeLogitsStayFiniteAndShiftInvariant) {
  // Appending a dimension with q = c / tau, k = 1, r = 0, v = 0 adds c to every s1 and changes
  // nothing else, so the first D outputs must not move, even at |s1| ~ 1e4.
  const RandomRow x(31, 16, 6);
  const int d = x.d, da = d + 1;
  const double tau = 0.25;
  for (double c : {1e4, -1e4}) {
    Vec qa(x.q), ra(x.r), ka, va;
    qa.push_back(c / tau);
    ra.push_back(0.0);
    for (int j = 0; j < x.n; ++j) {
      ka.insert(ka.end(), x.k.begin() + j * d, x.k.begin() + (j + 1) * d);
      ka.push_back(1.0);
      va.insert(va.end(), x.v.begin() + j * d, x.v.begin() + (j + 1) * d);
      va.push_back(0.0);
    }
    for (Family f : {kSoftmax, kPlain, kAmplified}) {
      f.tau = tau;
      const Vec base = Row(f, x.q, x.r, x.k, x.v, x.n, d);
      Vec shifted = Row(f, qa, ra, ka, va, x.n, da);
      shifted.pop_back();
      EXPECT_LT(RelDiff(shifted, base), 1e-9) << "shift " << c;
    }
  }
  // Logits spread over ~1e4: the weights collapse onto the largest key, for every form
  // (Cov_w is then zero), and nothing overflows.
  Vec q{1e4, 0}, r{0.3, -2}, k{0.1, 1, 0.9, -1, -0.8, 2}, v{1, 2, 3, 4, 5, 6};
  for (Family f : {kSoftmax, kPlain, kAmplified}) {
    f.tau = 1.0;
    const Vec out = Row(f, q, r, k, v, 3, 2);
    EXPECT_NEAR(out[0], 3.0, 1e-12);
    EXPECT_NEAR(out[1], 4.0, 1e-12);
  }
}

// ---------------------------------------------------------------- LLA (probe solved)

// rho = S^{-1} mu by Cholesky, written independently of the reference's solver.
Vec SolvedProbe(const RandomRow& x, double tau, double lambda) {
  const int d = x.d;
  Vec w(x.n), mu(d, 0.0), s(d * d, 0.0);
  for (int j = 0; j < x.n; ++j) w[j] = tau * Dot(x.q.data(), &x.k[j * d], d);
  const double m = *std::max_element(w.begin(), w.end());
  double omega = 0;
  for (int j = 0; j < x.n; ++j) {
    omega += (w[j] = std::exp(w[j] - m));
    for (int a = 0; a < d; ++a) {
      const double da = x.k[j * d + a] - x.q[a];
      mu[a] += w[j] * da;
      for (int b = 0; b < d; ++b) s[a * d + b] += w[j] * da * (x.k[j * d + b] - x.q[b]);
    }
  }
  for (int a = 0; a < d; ++a) s[a * d + a] += lambda * omega;
  Vec l(d * d, 0.0);  // S = L L^T
  for (int i = 0; i < d; ++i)
    for (int j = 0; j <= i; ++j) {
      double t = s[i * d + j];
      for (int p = 0; p < j; ++p) t -= l[i * d + p] * l[j * d + p];
      l[i * d + j] = i == j ? std::sqrt(t) : t / l[j * d + j];
    }
  Vec y(d), rho(d);
  for (int i = 0; i < d; ++i) {
    double t = mu[i];
    for (int p = 0; p < i; ++p) t -= l[i * d + p] * y[p];
    y[i] = t / l[i * d + i];
  }
  for (int i = d - 1; i >= 0; --i) {
    double t = y[i];
    for (int p = i + 1; p < d; ++p) t -= l[p * d + i] * rho[p];
    rho[i] = t / l[i * d + i];
  }
  return rho;
}

TEST(ReferenceLla, EqualsAmplifiedParallaxAtSolvedProbe) {
  // LLA's out = sum w (1 - rho.(k - q)) v / (omega - mu.rho) is, after dividing by omega,
  // exactly the amplified Parallax form with r = rho.
  const RandomRow x(24, 8, 7);
  for (double lambda : {1e-2, 0.3, 5.0}) {
    SCOPED_TRACE(lambda);
    Family lla = Fam(RefProbe::kSolved);
    lla.lambda = lambda;
    const Vec rho = SolvedProbe(x, 1 / std::sqrt(8.0), lambda);
    const Vec got = Row(lla, x.q, {}, x.k, x.v, x.n, x.d);
    EXPECT_LT(RelDiff(got, Row(kAmplified, x.q, rho, x.k, x.v, x.n, x.d)), 1e-10);
    // Not just softmax in disguise at moderate lambda.
    if (lambda < 1) {
      EXPECT_GT(RelDiff(got, Row(kSoftmax, x.q, {}, x.k, x.v, x.n, x.d)), 1e-3);
    }
  }
}

TEST(ReferenceLla, LargeLambdaApproachesSoftmax) {
  const RandomRow x(24, 8, 8);
  const Vec soft = Row(kSoftmax, x.q, {}, x.k, x.v, x.n, x.d);
  Family lla = Fam(RefProbe::kSolved);
  double prev = std::numeric_limits<double>::infinity();
  for (double lambda : {1.0, 1e3, 1e6, 1e9, 1e12}) {
    lla.lambda = lambda;
    const double err = RelDiff(Row(lla, x.q, {}, x.k, x.v, x.n, x.d), soft);
    EXPECT_LT(err, prev) << "lambda " << lambda;  // rho ~ mu / (lambda omega) shrinks
    prev = err;
  }
  EXPECT_LT(prev, 1e-9);
  EXPECT_LT(MaxAbs(SolvedProbe(x, 1 / std::sqrt(8.0), 1e12)), 1e-10);
}

// ---------------------------------------------------------------- Decode / Prefill wrappers

DecodeInputs RandomDecode(int batch, int hq, int hkv, int d, int lmax, std::vector<int> lens,
                          uint64_t seed) {
  std::mt19937_64 g(seed);
  DecodeInputs in;
  in.batch = batch;
  in.num_q_heads = hq;
  in.num_kv_heads = hkv;
  in.head_dim = d;
  in.max_seqlen = lmax;
  in.seqlens = std::move(lens);
  in.q = RmsRows(batch * hq, d, g);
  in.r = RmsRows(batch * hq, d, g);
  in.k = RmsRows(batch * lmax * hkv, d, g);
  in.v = RmsRows(batch * lmax * hkv, d, g);
  return in;
}

TEST(ReferenceDecode, GqaHeadMapping) {
  Family lla = Fam(RefProbe::kSolved);
  lla.lambda = 0.1;
  for (int hkv : {8, 4, 2, 1}) {
    const int hq = 8, d = 16, lmax = 9, group = hq / hkv;
    const DecodeInputs in = RandomDecode(2, hq, hkv, d, lmax, {9, 5}, 10 + hkv);
    for (const Family& f : {kSoftmax, kPlain, kAmplified, lla}) {
      DecodeInputs fin = in;
      if (f.probe != RefProbe::kLearned) fin.r.clear();  // r is optional there
      auto got = Decode(fin, f);
      ASSERT_TRUE(got.ok()) << got.status();
      for (int b = 0; b < 2; ++b)
        for (int h = 0; h < hq; ++h) {
          Vec expect(d, kPoison);
          const double* kv0 = &in.k[((b * lmax) * hkv + h / group) * d];
          const double* vv0 = &in.v[((b * lmax) * hkv + h / group) * d];
          AttendRow(&in.q[(b * hq + h) * d], &in.r[(b * hq + h) * d], kv0, vv0, in.seqlens[b], d,
                    static_cast<long>(hkv) * d, f, expect.data());
          const Vec row(got->begin() + (b * hq + h) * d, got->begin() + (b * hq + h + 1) * d);
          EXPECT_LT(RelDiff(row, expect), 1e-14) << "hkv " << hkv << " b " << b << " h " << h;
        }
    }
  }
  // Hand case: Hq = 4, Hkv = 2, tau = 0. V of kv head 0 is all 1, of kv head 1 all 2, so
  // heads 0, 1 (-> kv 0) give 1 and heads 2, 3 (-> kv 1) give 2.
  DecodeInputs in = RandomDecode(1, 4, 2, 4, 3, {3}, 99);
  for (int j = 0; j < 3; ++j)
    for (int g = 0; g < 2; ++g)
      for (int c = 0; c < 4; ++c) in.v[(j * 2 + g) * 4 + c] = g + 1.0;
  auto got = Decode(in, Fam(RefProbe::kNone, RefAffine::kPlain, 0.0));
  ASSERT_TRUE(got.ok()) << got.status();
  for (int h = 0; h < 4; ++h)
    for (int c = 0; c < 4; ++c) EXPECT_NEAR((*got)[h * 4 + c], h < 2 ? 1.0 : 2.0, 1e-14);
}

TEST(ReferenceDecode, WindowKeepsLastKeys) {
  // tau = 0, v_j = j + 1 everywhere, L = 6: no window -> mean 1..6 = 3.5; W = 3 -> mean 4..6 = 5.
  DecodeInputs in = RandomDecode(1, 2, 1, 4, 8, {6}, 20);
  for (int j = 0; j < 8; ++j)
    for (int c = 0; c < 4; ++c) in.v[j * 4 + c] = j < 6 ? j + 1.0 : 1e6;  // 1e6: past seqlen
  Family f = Fam(RefProbe::kNone, RefAffine::kPlain, 0.0);
  auto all = Decode(in, f);
  f.window = 3;
  auto win = Decode(in, f);
  ASSERT_TRUE(all.ok() && win.ok());
  for (int i = 0; i < 8; ++i) {
    EXPECT_NEAR((*all)[i], 3.5, 1e-12);
    EXPECT_NEAR((*win)[i], 5.0, 1e-12);
  }
}

TEST(ReferenceDecode, WindowAtLeastSeqlenIsNoWindow) {
  const DecodeInputs in = RandomDecode(3, 4, 2, 16, 11, {11, 7, 1}, 21);
  for (Family f : {kSoftmax, kPlain, kAmplified}) {
    auto ref = Decode(in, f);
    ASSERT_TRUE(ref.ok());
    for (int w : {11, 12, 1000}) {
      f.window = w;
      auto got = Decode(in, f);
      ASSERT_TRUE(got.ok());
      EXPECT_EQ(*got, *ref) << "window " << w;
    }
    f.window = 6;  // a real window does change the long sequences
    EXPECT_GT(RelDiff(*Decode(in, f), *ref), 1e-3);
  }
}

TEST(ReferenceDecode, SeqlenZeroGivesZeros) {
  const DecodeInputs in = RandomDecode(3, 2, 1, 8, 4, {4, 0, 1}, 22);
  auto got = Decode(in, kPlain);
  ASSERT_TRUE(got.ok());
  const int row = 2 * 8;
  for (int i = 0; i < row; ++i) EXPECT_EQ((*got)[row + i], 0.0);
  EXPECT_GT(MaxAbs(Vec(got->begin(), got->begin() + row)), 0.1);
  // seqlen 1: the single value row, whatever q and r are.
  for (int i = 0; i < row; ++i) EXPECT_NEAR((*got)[2 * row + i], in.v[2 * 4 * 8 + i % 8], 1e-12);
}

PrefillInputs LinearPrefill(int lq_max, int lk_max, int lq, int lk) {
  // One head, D = 2, v_j = (j + 1, j + 1); padding keys carry 1e6 so reading them shows.
  PrefillInputs in;
  in.batch = 1;
  in.num_q_heads = in.num_kv_heads = 1;
  in.head_dim = 2;
  in.max_seqlen_q = lq_max;
  in.max_seqlen_k = lk_max;
  in.seqlens_q = {lq};
  in.seqlens_k = {lk};
  in.q.assign(lq_max * 2, 0.5);
  in.r.assign(lq_max * 2, 0.25);
  in.k.assign(lk_max * 2, 1.0);
  for (int j = 0; j < lk_max; ++j) in.v.insert(in.v.end(), 2, j < lk ? j + 1.0 : 1e6);
  return in;
}

// Row i of Q rows against L keys, tau = 0 softmax: mean of v over the visible range
// (max(0, end - W + 1) .. end], end = L - Q + i; zero when end < 0.
double ExpectedMean(int q, int l, int i, int w) {
  const int end = l - q + i;
  if (end < 0) return 0.0;
  const int lo = w > 0 ? std::max(0, end - w + 1) : 0;
  return (lo + 1 + end + 1) / 2.0;
}

TEST(ReferencePrefill, CausalEndAligned) {
  struct Case {
    int lq_max, lk_max, q, l, w;
  };
  // Q < L (chunked prefill: row i sees L-Q+i+1 keys), Q == L (triangle), Q > L (first rows
  // see nothing), with and without a window, with padding rows and keys.
  for (const Case& c : {Case{4, 9, 3, 7, 0}, Case{5, 5, 5, 5, 0}, Case{4, 2, 4, 2, 0},
                        Case{6, 6, 6, 6, 2}, Case{3, 8, 3, 7, 3}}) {
    SCOPED_TRACE(testing::Message() << "Q=" << c.q << " L=" << c.l << " W=" << c.w);
    Family f = Fam(RefProbe::kNone, RefAffine::kPlain, 0.0);
    f.window = c.w;
    auto got = Prefill(LinearPrefill(c.lq_max, c.lk_max, c.q, c.l), f);
    ASSERT_TRUE(got.ok()) << got.status();
    for (int i = 0; i < c.lq_max; ++i) {
      const double want = i < c.q ? ExpectedMean(c.q, c.l, i, c.w) : 0.0;
      EXPECT_NEAR((*got)[i * 2], want, 1e-12) << "row " << i;
      EXPECT_NEAR((*got)[i * 2 + 1], want, 1e-12) << "row " << i;
    }
  }
  // Spot values by hand: Q=3, L=7 rows see keys 0..4, 0..5, 0..6 -> means 3, 3.5, 4.
  auto got = Prefill(LinearPrefill(3, 7, 3, 7), Fam(RefProbe::kNone, RefAffine::kPlain, 0.0));
  ASSERT_TRUE(got.ok());
  EXPECT_NEAR((*got)[0], 3.0, 1e-12);
  EXPECT_NEAR((*got)[2], 3.5, 1e-12);
  EXPECT_NEAR((*got)[4], 4.0, 1e-12);
}

TEST(ReferencePrefill, RandomMatchesPerRowEvaluation) {
  std::mt19937_64 g(30);
  PrefillInputs in;
  in.batch = 3;
  in.num_q_heads = 4;
  in.num_kv_heads = 2;
  in.head_dim = 8;
  in.max_seqlen_q = 6;
  in.max_seqlen_k = 10;
  in.seqlens_q = {6, 2, 0};
  in.seqlens_k = {6, 10, 3};
  in.q = RmsRows(3 * 6 * 4, 8, g);
  in.r = RmsRows(3 * 6 * 4, 8, g);
  in.k = RmsRows(3 * 10 * 2, 8, g);
  in.v = RmsRows(3 * 10 * 2, 8, g);
  for (int w : {0, 3}) {
    for (Family f : {kSoftmax, kPlain, kAmplified}) {
      f.window = w;
      auto got = Prefill(in, f);
      ASSERT_TRUE(got.ok()) << got.status();
      for (int b = 0; b < 3; ++b)
        for (int i = 0; i < 6; ++i)
          for (int h = 0; h < 4; ++h) {
            const int o = ((b * 6 + i) * 4 + h) * 8;
            const Vec row(got->begin() + o, got->begin() + o + 8);
            Vec expect(8, 0.0);
            const int end = in.seqlens_k[b] - in.seqlens_q[b] + i;
            if (i < in.seqlens_q[b] && end >= 0) {
              const int lo = w > 0 ? std::max(0, end - w + 1) : 0;
              const int kv = ((b * 10 + lo) * 2 + h / 2) * 8;
              AttendRow(&in.q[o], &in.r[o], &in.k[kv], &in.v[kv], end - lo + 1, 8, 16, f,
                        expect.data());
              EXPECT_GT(MaxAbs(row), 0.0);
            }
            EXPECT_LT(RelDiff(row, expect), 1e-14) << b << "," << i << "," << h << " W=" << w;
          }
    }
  }
}

// ---------------------------------------------------------------- input validation

void ExpectInvalid(const absl::Status& s, const std::string& field) {
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(std::string(s.message()).find("'" + field + "'"), std::string::npos)
      << "message should name " << field << ": " << s.message();
}

TEST(ReferenceValidation, DecodeBadInputsNameTheField) {
  const DecodeInputs good = RandomDecode(2, 4, 2, 8, 5, {5, 3}, 40);
  ASSERT_TRUE(Decode(good, kPlain).ok());
  struct Case {
    std::string field;
    std::function<void(DecodeInputs&, Family&)> spoil;
  };
  const std::vector<Case> cases = {
      {"q", [](DecodeInputs& in, Family&) { in.q.pop_back(); }},
      {"r", [](DecodeInputs& in, Family&) { in.r.pop_back(); }},
      {"r", [](DecodeInputs& in, Family&) { in.r.clear(); }},  // learned probe needs r
      {"k", [](DecodeInputs& in, Family&) { in.k.push_back(0); }},
      {"v", [](DecodeInputs& in, Family&) { in.v.clear(); }},
      {"seqlens", [](DecodeInputs& in, Family&) { in.seqlens.pop_back(); }},
      {"seqlens", [](DecodeInputs& in, Family&) { in.seqlens[1] = 6; }},
      {"seqlens", [](DecodeInputs& in, Family&) { in.seqlens[0] = -1; }},
      {"max_seqlen", [](DecodeInputs& in, Family&) { in.max_seqlen = -1; }},
      {"num_q_heads", [](DecodeInputs& in, Family&) { in.num_q_heads = 3; }},
      {"num_kv_heads", [](DecodeInputs& in, Family&) { in.num_kv_heads = 0; }},
      {"head_dim", [](DecodeInputs& in, Family&) { in.head_dim = 0; }},
      {"batch", [](DecodeInputs& in, Family&) { in.batch = -1; }},
      {"window", [](DecodeInputs&, Family& f) { f.window = -1; }},
      {"eps", [](DecodeInputs&, Family& f) { f.affine = RefAffine::kAmplified;
         f.eps = 0;
       }},
      {"lambda", [](DecodeInputs&, Family& f) { f.probe = RefProbe::kSolved;
         f.lambda = 0;
       }},
  };
  for (const Case& c : cases) {
    DecodeInputs in = good;
    Family f = kPlain;
    c.spoil(in, f);
    ExpectInvalid(Decode(in, f).status(), c.field);
  }
}

TEST(ReferenceValidation, PrefillBadInputsNameTheField) {
  const PrefillInputs good = LinearPrefill(4, 6, 3, 5);
  ASSERT_TRUE(Prefill(good, kPlain).ok());
  struct Case {
    std::string field;
    std::function<void(PrefillInputs&)> spoil;
  };
  const std::vector<Case> cases = {
      {"seqlens_q", [](PrefillInputs& in) { in.seqlens_q[0] = 5; }},
      {"seqlens_k", [](PrefillInputs& in) { in.seqlens_k[0] = -2; }},
      {"seqlens_k", [](PrefillInputs& in) { in.seqlens_k.push_back(1); }},
      {"max_seqlen_q", [](PrefillInputs& in) { in.max_seqlen_q = -1; }},
      {"q", [](PrefillInputs& in) { in.q.pop_back(); }},
      {"r", [](PrefillInputs& in) { in.r.push_back(1); }},
      {"k", [](PrefillInputs& in) { in.max_seqlen_k = 7; }},
      {"num_q_heads", [](PrefillInputs& in) { in.num_kv_heads = 2; }},
  };
  for (const Case& c : cases) {
    PrefillInputs in = good;
    c.spoil(in);
    ExpectInvalid(Prefill(in, kPlain).status(), c.field);
  }
  Family f = kPlain;
  f.window = -3;
  ExpectInvalid(Prefill(good, f).status(), "window");
}

// ---------------------------------------------------------------- Compare

TEST(ReferenceCompare, Metrics) {
  // got - ref = (0, 1): ||.|| = 1, ||ref|| = 5 -> 0.2; max |diff| 1 / max |ref| 4 -> 0.25.
  ErrorStats s = Compare({3, 5}, {3, 4});
  EXPECT_DOUBLE_EQ(s.rel_frobenius, 0.2);
  EXPECT_DOUBLE_EQ(s.max_rel_element, 0.25);
  EXPECT_EQ(s.non_finite, 0);

  s = Compare({3, 4}, {3, 4});
  EXPECT_EQ(s.rel_frobenius, 0.0);
  EXPECT_EQ(s.max_rel_element, 0.0);

  // Zero reference: measured against got itself; both zero is a perfect match.
  s = Compare({0, 2}, {0, 0});
  EXPECT_DOUBLE_EQ(s.rel_frobenius, 1.0);
  EXPECT_DOUBLE_EQ(s.max_rel_element, 1.0);
  s = Compare({0, 0}, {0, 0});
  EXPECT_EQ(s.rel_frobenius, 0.0);
  EXPECT_EQ(s.max_rel_element, 0.0);

  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  s = Compare({nan, 1, -inf}, {1, 1, 1});
  EXPECT_EQ(s.non_finite, 2);
  EXPECT_FALSE(s.rel_frobenius <= 1e-2);  // must fail any tolerance check
  EXPECT_FALSE(s.max_rel_element <= 1e-2);

  s = Compare({1, 2}, {1, 2, 3});
  EXPECT_FALSE(s.rel_frobenius <= 1e-2);
}

}  // namespace
}  // namespace parallax::ref
