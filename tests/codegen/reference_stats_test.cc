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
  RowStats st{12345.0, 12345.0};  // poison: must be overwritten
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

}  // namespace
}  // namespace parallax::ref
