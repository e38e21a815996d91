// Tests of the reference's per-row statistics (RowStats, PrefillWithStats): lse and tbar by
// hand, against direct evaluation, and the identities a backward pass and a merge rely on.
#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "parallax/codegen/reference.h"

namespace parallax::ref {
namespace {

using Vec = std::vector<double>;
constexpr double kInf = std::numeric_limits<double>::infinity();

Family Fam(RefProbe probe, RefAffine affine = RefAffine::kPlain, double tau = -1.0) {
  Family f;
  f.probe = probe;
  f.affine = affine;
  f.tau = tau;
  return f;
}

double Dot(const double* a, const double* b, int d) {
  double s = 0;
  for (int i = 0; i < d; ++i) s += a[i] * b[i];
  return s;
}

Vec RmsRows(int rows, int d, std::mt19937_64& g, double scale = 1.0) {
  std::normal_distribution<double> nd;
  Vec x(static_cast<size_t>(rows) * d);
  for (int i = 0; i < rows; ++i) {
    double ss = 0;
    for (int c = 0; c < d; ++c) ss += (x[i * d + c] = nd(g)) * x[i * d + c];
    for (int c = 0; c < d; ++c) x[i * d + c] *= scale / std::sqrt(ss / d);
  }
  return x;
}

// One row against n contiguous keys; the statistics AttendRow reports.
RowStats Stats(const Family& f, const Vec& q, const Vec& r, const Vec& k, const Vec& v, int n, int d,
               Vec* out = nullptr) {
  Vec o(d);
  RowStats st{12345.0, 12345.0, Vec(3, 12345.0)};  // poison: must be overwritten
  AttendRow(q.data(), r.empty() ? nullptr : r.data(), k.data(), v.data(), n, d, d, f, o.data(), &st);
  if (out) *out = o;
  return st;
}

double MaxRelDiff(const Vec& a, const Vec& b) {
  double m = 0, ref = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    m = std::max(m, std::abs(a[i] - b[i]));
    ref = std::max(ref, std::abs(b[i]));
  }
  return a.size() == b.size() ? m / std::max(ref, 1e-300) : kInf;
}

// The tiny case of reference_test.cc: tau = 1, s1 = (0, ln 3), s2 = r.k = (1, -1), so
// lse = ln(1 + 3) = ln 4 and tbar = 1/4 - 3/4 = -1/2.
TEST(ReferenceStats, TinyByHand) {
  const Vec q{1, 0.5}, r{0, 1}, k{-0.5, 1, std::log(3.0) + 0.5, -1}, v{8, 0, 0, 8};
  for (RefAffine a : {RefAffine::kPlain, RefAffine::kAmplified}) {
    const RowStats p = Stats(Fam(RefProbe::kLearned, a, 1.0), q, r, k, v, 2, 2);
    EXPECT_NEAR(p.lse, std::log(4.0), 1e-14);
    EXPECT_NEAR(p.tbar, -0.5, 1e-14);
  }
  const RowStats s = Stats(Fam(RefProbe::kNone, RefAffine::kPlain, 1.0), q, r, k, v, 2, 2);
  EXPECT_NEAR(s.lse, std::log(4.0), 1e-14);
  EXPECT_EQ(s.tbar, 0.0);  // probe none ignores r
  // One key: lse is its scaled score, tbar its probe score.
  const RowStats one = Stats(Fam(RefProbe::kLearned, RefAffine::kPlain, 0.5), q, r, k, v, 1, 2);
  EXPECT_NEAR(one.lse, 0.0, 1e-15);
  EXPECT_NEAR(one.tbar, 1.0, 1e-15);
}

TEST(ReferenceStats, ZeroOrNullProbeGivesZeroTbar) {
  std::mt19937_64 g(7);
  const int n = 23, d = 16;
  const Vec q = RmsRows(1, d, g), k = RmsRows(n, d, g), v = RmsRows(n, d, g);
  const Family plain = Fam(RefProbe::kLearned);
  EXPECT_EQ(Stats(plain, q, Vec(d, 0.0), k, v, n, d).tbar, 0.0);
  EXPECT_EQ(Stats(plain, q, {}, k, v, n, d).tbar, 0.0);
  EXPECT_EQ(Stats(Fam(RefProbe::kNone), q, RmsRows(1, d, g), k, v, n, d).tbar, 0.0);
}

// lse and tbar from their definitions, evaluated directly; large logits (|s1| ~ 1e4) must
// keep lse finite and exact to relative rounding.
TEST(ReferenceStats, MatchDirectEvaluation) {
  for (double tau : {0.125, 1.0, 500.0}) {
    SCOPED_TRACE(tau);
    std::mt19937_64 g(11);
    const int n = 37, d = 64;
    const Vec q = RmsRows(1, d, g), r = RmsRows(1, d, g, 3.0), k = RmsRows(n, d, g), v = RmsRows(n, d, g);
    Vec s1(n);
    for (int j = 0; j < n; ++j) s1[j] = tau * Dot(q.data(), &k[j * d], d);
    const double m = *std::max_element(s1.begin(), s1.end());
    double sum = 0;
    for (double x : s1) sum += std::exp(x - m);
    const double lse = m + std::log(sum);
    double tbar = 0;
    for (int j = 0; j < n; ++j) tbar += std::exp(s1[j] - lse) * Dot(r.data(), &k[j * d], d);
    const RowStats st = Stats(Fam(RefProbe::kLearned, RefAffine::kPlain, tau), q, r, k, v, n, d);
    EXPECT_NEAR(st.lse, lse, 1e-13 * std::max(1.0, std::abs(lse)));
    // exp(s1 - lse) carries lse's absolute rounding (~1e-16 |lse|) into every weight.
    EXPECT_NEAR(st.tbar, tbar, 1e-12 * std::max(1.0, std::abs(lse)));
    if (tau == 0.125) {  // small enough to sum without the max
      EXPECT_NEAR(st.lse, std::log(sum * std::exp(m)), 1e-12);
    }
  }
}

// What a backward pass does: w_j = exp(tau q.k_j - lse) and the effective weights
// w_j (1 - (s2_j - tbar)) (amplified: (s2_j - tbar) / delta) give back the output.
TEST(ReferenceStats, OutputRecomputedFromStats) {
  std::mt19937_64 g(13);
  const int n = 41, d = 32;
  const double tau = 1 / std::sqrt(32.0);
  for (double r_scale : {0.1, 1.0, 10.0}) {
    SCOPED_TRACE(r_scale);
    const Vec q = RmsRows(1, d, g), r = RmsRows(1, d, g, r_scale), k = RmsRows(n, d, g), v = RmsRows(n, d, g);
    for (RefAffine a : {RefAffine::kPlain, RefAffine::kAmplified}) {
      Vec out;
      const RowStats st = Stats(Fam(RefProbe::kLearned, a), q, r, k, v, n, d, &out);
      double delta = 1;
      if (a == RefAffine::kAmplified) delta = 1 - (st.tbar - Dot(r.data(), q.data(), d));
      Vec got(d, 0.0);
      double wsum = 0;
      for (int j = 0; j < n; ++j) {
        const double w = std::exp(tau * Dot(q.data(), &k[j * d], d) - st.lse);
        const double eff = w * (1 - (Dot(r.data(), &k[j * d], d) - st.tbar) / delta);
        wsum += w;
        for (int c = 0; c < d; ++c) got[c] += eff * v[j * d + c];
      }
      EXPECT_NEAR(wsum, 1.0, 1e-13);
      EXPECT_LT(MaxRelDiff(got, out), 1e-12);
    }
  }
}

// Two parts of the key set merge through lse: tbar as the l-weighted mean, softmax outputs
// likewise, Parallax outputs only with each part's vbar (reference.h).
TEST(ReferenceStats, PartialsMergeThroughLse) {
  std::mt19937_64 g(17);
  const int n = 30, d = 16, split = 11;
  const Vec q = RmsRows(1, d, g), r = RmsRows(1, d, g), k = RmsRows(n, d, g), v = RmsRows(n, d, g);
  const Family plain = Fam(RefProbe::kLearned), soft = Fam(RefProbe::kNone);
  auto part = [&](const Family& f, int lo, int hi, Vec* out) {
    const Vec kp(k.begin() + lo * d, k.begin() + hi * d), vp(v.begin() + lo * d, v.begin() + hi * d);
    return Stats(f, q, r, kp, vp, hi - lo, d, out);
  };
  Vec full, a_out, b_out, a_bar, b_bar, full_soft;
  const RowStats all = part(plain, 0, n, &full), a = part(plain, 0, split, &a_out), b = part(plain, split, n, &b_out);
  part(soft, 0, split, &a_bar);
  part(soft, split, n, &b_bar);
  part(soft, 0, n, &full_soft);
  const double lse = std::max(a.lse, b.lse) + std::log(std::exp(a.lse - std::max(a.lse, b.lse)) +
                                                        std::exp(b.lse - std::max(a.lse, b.lse)));
  EXPECT_NEAR(lse, all.lse, 1e-13);
  const double la = std::exp(a.lse - lse), lb = std::exp(b.lse - lse);
  EXPECT_NEAR(la * a.tbar + lb * b.tbar, all.tbar, 1e-13);
  Vec merged(d), merged_soft(d), naive(d);
  for (int c = 0; c < d; ++c) {
    merged[c] = la * (a_out[c] + (all.tbar - a.tbar) * a_bar[c]) + lb * (b_out[c] + (all.tbar - b.tbar) * b_bar[c]);
    merged_soft[c] = la * a_bar[c] + lb * b_bar[c];
    naive[c] = la * a_out[c] + lb * b_out[c];
  }
  EXPECT_LT(MaxRelDiff(merged, full), 1e-12);
  EXPECT_LT(MaxRelDiff(merged_soft, full_soft), 1e-12);
  EXPECT_GT(MaxRelDiff(naive, full), 1e-3) << "the vbar term should matter in this case";
}

TEST(ReferenceStats, NoVisibleKey) {
  const Vec q{1, 0}, r{0, 1}, k{1, 1}, v{1, 1};
  for (const Family& f : {Fam(RefProbe::kNone), Fam(RefProbe::kLearned), Fam(RefProbe::kSolved)}) {
    const RowStats st = Stats(f, q, r, k, v, 0, 2);
    EXPECT_EQ(st.lse, -kInf);
    EXPECT_EQ(st.tbar, 0.0);
  }
}

// PrefillWithStats: [B][Hq][Lq_max] layout, GQA, the causal window, rows that see no key
// (Q > L) and padding rows, against per-row AttendRow; its out equals Prefill's.
TEST(ReferenceStats, PrefillLayoutAndEdgeRows) {
  std::mt19937_64 g(19);
  PrefillInputs in;
  in.batch = 3;
  in.num_q_heads = 4;
  in.num_kv_heads = 2;
  in.head_dim = 8;
  in.max_seqlen_q = 6;
  in.max_seqlen_k = 10;
  in.seqlens_q = {6, 5, 0};
  in.seqlens_k = {6, 3, 4};  // batch 1: rows 0 and 1 see no key
  in.q = RmsRows(3 * 6 * 4, 8, g);
  in.r = RmsRows(3 * 6 * 4, 8, g);
  in.k = RmsRows(3 * 10 * 2, 8, g);
  in.v = RmsRows(3 * 10 * 2, 8, g);
  for (int w : {0, 2}) {
    for (Family f : {Fam(RefProbe::kNone), Fam(RefProbe::kLearned), Fam(RefProbe::kLearned, RefAffine::kAmplified)}) {
      SCOPED_TRACE(testing::Message() << "W=" << w << " probe=" << static_cast<int>(f.probe));
      f.window = w;
      absl::StatusOr<PrefillResult> got = PrefillWithStats(in, f);
      ASSERT_TRUE(got.ok()) << got.status();
      absl::StatusOr<Vec> plain = Prefill(in, f);
      ASSERT_TRUE(plain.ok());
      EXPECT_EQ(got->out, *plain);
      ASSERT_EQ(got->lse.size(), 3u * 4 * 6);
      ASSERT_EQ(got->tbar.size(), 3u * 4 * 6);
      int finite = 0;
      for (int b = 0; b < 3; ++b)
        for (int h = 0; h < 4; ++h)
          for (int i = 0; i < 6; ++i) {
            const size_t s = (b * 4 + h) * 6 + i;
            const int end = in.seqlens_k[b] - in.seqlens_q[b] + i;
            if (i >= in.seqlens_q[b] || end < 0) {
              EXPECT_EQ(got->lse[s], -kInf) << b << "," << h << "," << i;
              EXPECT_EQ(got->tbar[s], 0.0) << b << "," << h << "," << i;
              continue;
            }
            const int lo = w > 0 ? std::max(0, end - w + 1) : 0;
            const int o = ((b * 6 + i) * 4 + h) * 8, kv = ((b * 10 + lo) * 2 + h / 2) * 8;
            Vec out(8);
            RowStats want;
            AttendRow(&in.q[o], &in.r[o], &in.k[kv], &in.v[kv], end - lo + 1, 8, 16, f, out.data(), &want);
            EXPECT_EQ(got->lse[s], want.lse) << b << "," << h << "," << i;
            EXPECT_EQ(got->tbar[s], want.tbar) << b << "," << h << "," << i;
            EXPECT_EQ(got->tbar[s] == 0.0, f.probe == RefProbe::kNone);
            ++finite;
          }
      EXPECT_EQ(finite, 4 * (6 + 3));
    }
  }
}

TEST(ReferenceStats, PrefillWithStatsRefusesSolvedAndBadInputs) {
  PrefillInputs in;
  in.batch = 1;
  in.num_q_heads = in.num_kv_heads = 1;
  in.head_dim = 2;
  in.max_seqlen_q = in.max_seqlen_k = 1;
  in.seqlens_q = in.seqlens_k = {1};
  in.q = in.r = in.k = in.v = {1, 0};
  EXPECT_EQ(PrefillWithStats(in, Fam(RefProbe::kSolved)).status().code(), absl::StatusCode::kUnimplemented);
  in.k.pop_back();
  const absl::Status s = PrefillWithStats(in, Fam(RefProbe::kLearned)).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("PrefillWithStats: 'k'"), absl::string_view::npos) << s;
}

// vbar is the softmax output of the same keys: probe none's output, for every member.
TEST(ReferenceStats, VbarIsTheSoftmaxOutput) {
  std::mt19937_64 g(23);
  const int n = 29, d = 16;
  const Vec q = RmsRows(1, d, g), r = RmsRows(1, d, g, 3.0), k = RmsRows(n, d, g), v = RmsRows(n, d, g);
  Vec soft;
  const RowStats s = Stats(Fam(RefProbe::kNone), q, r, k, v, n, d, &soft);
  EXPECT_LT(MaxRelDiff(s.vbar, soft), 1e-14);
  for (const Family& f : {Fam(RefProbe::kLearned), Fam(RefProbe::kLearned, RefAffine::kAmplified), Fam(RefProbe::kSolved)}) {
    Vec out;
    const RowStats st = Stats(f, q, r, k, v, n, d, &out);
    ASSERT_EQ(st.vbar.size(), static_cast<size_t>(d));
    EXPECT_LT(MaxRelDiff(st.vbar, soft), 1e-14);
    EXPECT_GT(MaxRelDiff(out, soft), 1e-3) << "Parallax differs from its vbar";
  }
  const RowStats none = Stats(Fam(RefProbe::kLearned), q, r, k, v, 0, d);
  EXPECT_EQ(none.vbar, Vec(d, 0.0));
}

// One row's keys [lo, hi) as a part: its output and statistics.
struct Part {
  Vec out;
  RowStats st;
};
Part Attend(const Family& f, const Vec& q, const Vec& r, const Vec& k, const Vec& v, int lo, int hi, int d) {
  Part p;
  p.out.resize(d);
  AttendRow(q.data(), r.data(), k.data() + lo * d, v.data() + lo * d, hi - lo, d, d, f, p.out.data(), &p.st);
  return p;
}
Part Merge(const Family& f, const Part& a, const Part& b, double rq, int d) {
  Part m;
  m.out.resize(d);
  const absl::Status s = MergeStates(a.out.data(), a.st, b.out.data(), b.st, d, f, rq, m.out.data(), &m.st);
  EXPECT_TRUE(s.ok()) << s;
  return m;
}
// A merge against the unsplit row: output and vbar to `tol` of their peak, lse and tbar to
// `tol` of max(1, |value|) (lse ~ 1e4 carries absolute rounding of that size into tbar).
void ExpectSame(const Part& got, const Part& want, double tol) {
  EXPECT_LT(MaxRelDiff(got.out, want.out), tol);
  EXPECT_LT(MaxRelDiff(got.st.vbar, want.st.vbar), tol);
  if (std::isinf(want.st.lse)) {
    EXPECT_EQ(got.st.lse, want.st.lse);
  } else {
    EXPECT_NEAR(got.st.lse, want.st.lse, tol * std::max(1.0, std::abs(want.st.lse)));
  }
  EXPECT_NEAR(got.st.tbar, want.st.tbar, tol * std::max({1.0, std::abs(want.st.tbar), std::abs(want.st.lse)}));
}

std::vector<Family> Members(double eps = 1e-6) {
  std::vector<Family> fs = {Fam(RefProbe::kNone), Fam(RefProbe::kNone, RefAffine::kAmplified),
                            Fam(RefProbe::kLearned), Fam(RefProbe::kLearned, RefAffine::kAmplified)};
  for (Family& f : fs) f.eps = eps;
  return fs;
}

// Two parts over a split of the row's keys merge to the unsplit row to 1e-12, every member,
// r at three scales, empty parts included (split 0 and n), and large logits (tau 500:
// |s1| ~ 1e4). eps = 10 guards every delta (parts' and the whole row's), which the
// amplified merge must undo exactly.
TEST(ReferenceMerge, TwoPartsEqualTheUnsplitRow) {
  const int n = 37, d = 32;
  for (double tau : {-1.0, 500.0})
    for (double r_scale : {0.1, 1.0, 10.0})
      for (double eps : {1e-6, 10.0})
        for (Family f : Members(eps)) {
          f.tau = tau;
          std::mt19937_64 g(29);
          const Vec q = RmsRows(1, d, g), r = RmsRows(1, d, g, r_scale), k = RmsRows(n, d, g), v = RmsRows(n, d, g);
          const double rq = Dot(r.data(), q.data(), d);
          const Part whole = Attend(f, q, r, k, v, 0, n, d);
          for (int split : {0, 1, 11, 36, 37}) {
            SCOPED_TRACE(testing::Message() << "tau=" << tau << " r_scale=" << r_scale << " eps=" << eps
                                            << " probe=" << static_cast<int>(f.probe)
                                            << " affine=" << static_cast<int>(f.affine) << " split=" << split);
            const Part a = Attend(f, q, r, k, v, 0, split, d), b = Attend(f, q, r, k, v, split, n, d);
            ExpectSame(Merge(f, a, b, rq, d), whole, 1e-12);
            ExpectSame(Merge(f, b, a, rq, d), whole, 1e-12);  // order does not matter
          }
        }
}

// Three parts merged pairwise, either way round, equal the unsplit row.
TEST(ReferenceMerge, ThreePartsMergedPairwise) {
  const int n = 50, d = 16;
  for (double tau : {-1.0, 500.0})
    for (Family f : Members()) {
      f.tau = tau;
      std::mt19937_64 g(31);
      const Vec q = RmsRows(1, d, g), r = RmsRows(1, d, g, 2.0), k = RmsRows(n, d, g), v = RmsRows(n, d, g);
      const double rq = Dot(r.data(), q.data(), d);
      const Part whole = Attend(f, q, r, k, v, 0, n, d);
      for (auto [s1, s2] : {std::pair<int, int>{7, 30}, {0, 20}, {20, 50}, {25, 25}}) {
        SCOPED_TRACE(testing::Message() << "tau=" << tau << " probe=" << static_cast<int>(f.probe)
                                        << " affine=" << static_cast<int>(f.affine) << " splits=" << s1 << "," << s2);
        const Part a = Attend(f, q, r, k, v, 0, s1, d), b = Attend(f, q, r, k, v, s1, s2, d),
                   c = Attend(f, q, r, k, v, s2, n, d);
        ExpectSame(Merge(f, Merge(f, a, b, rq, d), c, rq, d), whole, 1e-12);
        ExpectSame(Merge(f, a, Merge(f, b, c, rq, d), rq, d), whole, 1e-12);
      }
    }
}

// Without visible keys a part is absent whatever its values; two absent parts merge to one.
TEST(ReferenceMerge, AbsentParts) {
  const int d = 8;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  Part none{Vec(d, 0.0), RowStats{-kInf, 0.0, Vec(d, 0.0)}};
  Part garbage{Vec(d, nan), RowStats{-kInf, nan, Vec(d, nan)}};
  for (const Family& f : Members()) {
    const Part m = Merge(f, none, garbage, 0.3, d);
    EXPECT_EQ(m.out, Vec(d, 0.0));
    EXPECT_EQ(m.st.vbar, Vec(d, 0.0));
    EXPECT_EQ(m.st.lse, -kInf);
    EXPECT_EQ(m.st.tbar, 0.0);
    // A present part merged with an absent one comes back as it was.
    std::mt19937_64 g(37);
    const Vec q = RmsRows(1, d, g), r = RmsRows(1, d, g), k = RmsRows(5, d, g), v = RmsRows(5, d, g);
    const Part a = Attend(f, q, r, k, v, 0, 5, d);
    const Part back = Merge(f, garbage, a, Dot(r.data(), q.data(), d), d);
    ExpectSame(back, a, 1e-14);
  }
}

TEST(ReferenceMerge, Refusals) {
  const Vec o(4, 1.0);
  RowStats a{0.0, 0.0, Vec(4, 1.0)}, b{0.0, 0.0, Vec(3, 1.0)};
  Vec out(4);
  absl::Status s = MergeStates(o.data(), a, o.data(), b, 4, Fam(RefProbe::kLearned), 0, out.data());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("'b.vbar'"), absl::string_view::npos) << s;
  s = MergeStates(o.data(), a, o.data(), a, 0, Fam(RefProbe::kLearned), 0, out.data());
  EXPECT_NE(s.message().find("'head_dim'"), absl::string_view::npos) << s;
  s = MergeStates(o.data(), a, o.data(), a, 4, Fam(RefProbe::kSolved), 0, out.data());
  EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented);
}

PrefillInputs RandomPrefill(std::mt19937_64& g, int batch, int hq, int hkv, int d, std::vector<int> lq,
                            std::vector<int> lk) {
  PrefillInputs in;
  in.batch = batch;
  in.num_q_heads = hq;
  in.num_kv_heads = hkv;
  in.head_dim = d;
  in.max_seqlen_q = *std::max_element(lq.begin(), lq.end());
  in.max_seqlen_k = *std::max_element(lk.begin(), lk.end());
  in.seqlens_q = std::move(lq);
  in.seqlens_k = std::move(lk);
  in.q = RmsRows(batch * in.max_seqlen_q * hq, d, g);
  in.r = RmsRows(batch * in.max_seqlen_q * hq, d, g);
  in.k = RmsRows(batch * in.max_seqlen_k * hkv, d, g);
  in.v = RmsRows(batch * in.max_seqlen_k * hkv, d, g);
  return in;
}

// causal = false: every row sees all of its sequence's keys; a window is refused.
TEST(ReferencePrefill, NonCausal) {
  std::mt19937_64 g(41);
  PrefillInputs in = RandomPrefill(g, 2, 4, 2, 8, {5, 9}, {7, 3});
  in.causal = false;
  for (const Family& f : Members()) {
    absl::StatusOr<PrefillResult> got = PrefillWithStats(in, f);
    ASSERT_TRUE(got.ok()) << got.status();
    for (int b = 0; b < 2; ++b)
      for (int i = 0; i < 9; ++i)
        for (int h = 0; h < 4; ++h) {
          const int o = ((b * 9 + i) * 4 + h) * 8, kv = (b * 7 * 2 + h / 2) * 8;
          Vec want(8, 0.0);
          RowStats st{-kInf, 0.0, Vec(8, 0.0)};
          if (i < in.seqlens_q[b])
            AttendRow(&in.q[o], &in.r[o], &in.k[kv], &in.v[kv], in.seqlens_k[b], 8, 16, f, want.data(), &st);
          EXPECT_EQ(Vec(got->out.begin() + o, got->out.begin() + o + 8), want) << b << "," << i << "," << h;
          EXPECT_EQ(Vec(got->vbar.begin() + o, got->vbar.begin() + o + 8), st.vbar);
          EXPECT_EQ(got->lse[(b * 4 + h) * 9 + i], st.lse);
          EXPECT_EQ(got->tbar[(b * 4 + h) * 9 + i], st.tbar);
        }
  }
  Family w = Fam(RefProbe::kLearned);
  w.window = 3;
  const absl::Status s = Prefill(in, w).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("'window'"), absl::string_view::npos) << s;
}

// The cascade: the last Q keys of sequences sharing a P-key prefix attend to the prefix
// non-causally (part A) and to their own keys causally (part B); merging the parts row by
// row equals causal attention over the whole sequence.
TEST(ReferencePrefill, CascadeOfPrefixAndSuffixEqualsTheWhole) {
  const int B = 3, hq = 4, hkv = 2, d = 16, P = 20, Q = 6;
  const std::vector<int> lk = {P + 6, P + 10, P + 31};
  std::mt19937_64 g(43);
  for (double tau : {-1.0, 500.0})
    for (Family f : Members()) {
      f.tau = tau;
      SCOPED_TRACE(testing::Message() << "tau=" << tau << " probe=" << static_cast<int>(f.probe)
                                      << " affine=" << static_cast<int>(f.affine));
      PrefillInputs whole = RandomPrefill(g, B, hq, hkv, d, std::vector<int>(B, Q), lk);
      for (int b = 1; b < B; ++b)  // one shared prefix
        for (size_t x = 0; x < size_t(P) * hkv * d; ++x) {
          whole.k[b * whole.max_seqlen_k * hkv * d + x] = whole.k[x];
          whole.v[b * whole.max_seqlen_k * hkv * d + x] = whole.v[x];
        }
      PrefillInputs prefix = whole, suffix = whole;
      prefix.causal = false;
      prefix.seqlens_k.assign(B, P);  // the first P keys of each (padded) sequence
      suffix.max_seqlen_k = whole.max_seqlen_k - P;
      for (int b = 0; b < B; ++b) suffix.seqlens_k[b] = lk[b] - P;
      suffix.k.clear();
      suffix.v.clear();
      for (int b = 0; b < B; ++b) {
        const size_t row = size_t(hkv) * d, base = size_t(b) * whole.max_seqlen_k * row;
        suffix.k.insert(suffix.k.end(), whole.k.begin() + base + P * row, whole.k.begin() + base + whole.max_seqlen_k * row);
        suffix.v.insert(suffix.v.end(), whole.v.begin() + base + P * row, whole.v.begin() + base + whole.max_seqlen_k * row);
      }
      absl::StatusOr<PrefillResult> w = PrefillWithStats(whole, f), a = PrefillWithStats(prefix, f),
                                    c = PrefillWithStats(suffix, f);
      ASSERT_TRUE(w.ok() && a.ok() && c.ok()) << w.status() << a.status() << c.status();
      for (int b = 0; b < B; ++b)
        for (int i = 0; i < Q; ++i)
          for (int h = 0; h < hq; ++h) {
            const size_t o = ((size_t(b) * Q + i) * hq + h) * d, st = (size_t(b) * hq + h) * Q + i;
            auto part = [&](const PrefillResult& r) {
              return Part{Vec(r.out.begin() + o, r.out.begin() + o + d),
                          RowStats{r.lse[st], r.tbar[st], Vec(r.vbar.begin() + o, r.vbar.begin() + o + d)}};
            };
            const double rq = Dot(&whole.r[o], &whole.q[o], d);
            ExpectSame(Merge(f, part(*a), part(*c), rq, d), part(*w), 1e-12);
          }
    }
}

TEST(ReferenceStats, DecodeWithStatsIsOneRowOfPrefill) {
  std::mt19937_64 g(47);
  DecodeInputs in;
  in.batch = 2;
  in.num_q_heads = 4;
  in.num_kv_heads = 2;
  in.head_dim = 8;
  in.max_seqlen = 9;
  in.seqlens = {9, 0};
  in.q = RmsRows(8, 8, g);
  in.r = RmsRows(8, 8, g);
  in.k = RmsRows(2 * 9 * 2, 8, g);
  in.v = RmsRows(2 * 9 * 2, 8, g);
  for (const Family& f : Members()) {
    absl::StatusOr<PrefillResult> got = DecodeWithStats(in, f);
    ASSERT_TRUE(got.ok()) << got.status();
    absl::StatusOr<Vec> plain = Decode(in, f);
    ASSERT_TRUE(plain.ok());
    EXPECT_EQ(got->out, *plain);
    ASSERT_EQ(got->lse.size(), 8u);
    ASSERT_EQ(got->vbar.size(), 64u);
    for (int h = 0; h < 4; ++h) {
      Vec out(8);
      RowStats want;
      AttendRow(&in.q[h * 8], &in.r[h * 8], &in.k[(h / 2) * 8], &in.v[(h / 2) * 8], 9, 8, 16, f, out.data(), &want);
      EXPECT_EQ(got->lse[h], want.lse);
      EXPECT_EQ(got->tbar[h], want.tbar);
      EXPECT_EQ(Vec(got->vbar.begin() + h * 8, got->vbar.begin() + h * 8 + 8), want.vbar);
      EXPECT_EQ(got->lse[4 + h], -kInf);  // the empty sequence
      EXPECT_EQ(got->tbar[4 + h], 0.0);
    }
  }
  EXPECT_EQ(DecodeWithStats(in, Fam(RefProbe::kSolved)).status().code(), absl::StatusCode::kUnimplemented);
}

}  // namespace
}  // namespace parallax::ref
