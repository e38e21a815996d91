#include "parallax/codegen/reference.h"

#include "reference_internal.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace parallax::ref {
namespace {

double Dot(const double* a, const double* b, int n) {
  double s = 0;
  for (int i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

// Keeps the amplified / LLA denominator away from zero without flipping its sign.
double GuardDelta(double delta, double eps) {
  if (std::abs(delta) >= eps) return delta;
  return delta < 0 ? -eps : eps;  // sign(0) = +1
}

// Solves a x = b for a dense n x n row-major matrix; b is overwritten with x. Partial pivoting
// keeps it usable when lambda is tiny and S is close to singular.
void SolveDense(std::vector<double>& a, std::vector<double>& b, int n) {
  for (int c = 0; c < n; ++c) {
    int p = c;
    for (int i = c + 1; i < n; ++i)
      if (std::abs(a[i * n + c]) > std::abs(a[p * n + c])) p = i;
    if (p != c) {
      std::swap_ranges(a.begin() + p * n, a.begin() + (p + 1) * n, a.begin() + c * n);
      std::swap(b[p], b[c]);
    }
    for (int i = c + 1; i < n; ++i) {
      const double m = a[i * n + c] / a[c * n + c];
      if (m == 0) continue;
      for (int j = c; j < n; ++j) a[i * n + j] -= m * a[c * n + j];
      b[i] -= m * b[c];
    }
  }
  for (int i = n - 1; i >= 0; --i) {
    double s = b[i];
    for (int j = i + 1; j < n; ++j) s -= a[i * n + j] * b[j];
    b[i] = s / a[i * n + i];
  }
}

// LLA's naive algorithm; w are the unnormalised weights exp(s1_j - m), so omega >= 1.
void SolvedRow(const double* q, const double* k, const double* v, int n, int d, long stride,
               const std::vector<double>& w, const Family& f, double* out) {
  double omega = 0;
  std::vector<double> mu(d, 0.0), s(static_cast<size_t>(d) * d, 0.0), dk(d);
  for (int j = 0; j < n; ++j) {
    const double* kj = k + j * stride;
    for (int x = 0; x < d; ++x) dk[x] = kj[x] - q[x];
    omega += w[j];
    for (int x = 0; x < d; ++x) {
      mu[x] += w[j] * dk[x];
      for (int y = 0; y < d; ++y) s[x * d + y] += w[j] * dk[x] * dk[y];
    }
  }
  for (int x = 0; x < d; ++x) s[x * d + x] += f.lambda * omega;
  std::vector<double> rho = mu;
  SolveDense(s, rho, d);
  const double delta = GuardDelta(omega - Dot(mu.data(), rho.data(), d), f.eps);
  const double rq = Dot(rho.data(), q, d);
  for (int j = 0; j < n; ++j) {
    const double c = w[j] * (1 - Dot(rho.data(), k + j * stride, d) + rq) / delta;
    const double* vj = v + j * stride;
    for (int x = 0; x < d; ++x) out[x] += c * vj[x];
  }
}

absl::Status Bad(absl::string_view fn, absl::string_view field, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(fn, ": '", field, "' ", why));
}

absl::Status CheckSize(absl::string_view fn, absl::string_view field, size_t got, int64_t want) {
  if (static_cast<int64_t>(got) == want) return absl::OkStatus();
  return Bad(fn, field, absl::StrCat("has ", got, " elements, expected ", want));
}

absl::Status CheckFamily(absl::string_view fn, const Family& f) {
  if (!std::isfinite(f.tau)) return Bad(fn, "tau", "must be finite");
  if (f.window < 0) return Bad(fn, "window", absl::StrCat("is ", f.window, ", must be >= 0"));
  const bool uses_eps = f.probe == RefProbe::kSolved || f.affine == RefAffine::kAmplified;
  if (uses_eps && !(f.eps > 0)) return Bad(fn, "eps", "must be > 0");
  if (f.probe == RefProbe::kSolved && !(f.lambda > 0)) return Bad(fn, "lambda", "must be > 0");
  return absl::OkStatus();
}

absl::Status CheckHeads(absl::string_view fn, int batch, int hq, int hkv, int d) {
  if (batch < 0) return Bad(fn, "batch", absl::StrCat("is ", batch, ", must be >= 0"));
  if (hq <= 0) return Bad(fn, "num_q_heads", absl::StrCat("is ", hq, ", must be > 0"));
  if (hkv <= 0) return Bad(fn, "num_kv_heads", absl::StrCat("is ", hkv, ", must be > 0"));
  if (hq % hkv != 0)
    return Bad(fn, "num_q_heads",
               absl::StrCat("(", hq, ") must be a multiple of 'num_kv_heads' (", hkv, ")"));
  if (d <= 0) return Bad(fn, "head_dim", absl::StrCat("is ", d, ", must be > 0"));
  return absl::OkStatus();
}

absl::Status CheckLengths(absl::string_view fn, absl::string_view field, const std::vector<int>& len,
                          int batch, absl::string_view max_field, int max) {
  if (max < 0) return Bad(fn, max_field, absl::StrCat("is ", max, ", must be >= 0"));
  if (auto s = CheckSize(fn, field, len.size(), batch); !s.ok()) return s;
  for (int b = 0; b < batch; ++b)
    if (len[b] < 0 || len[b] > max)
      return Bad(fn, field,
                 absl::StrCat("[", b, "] is ", len[b], ", must be in [0, ", max_field, "=", max, "]"));
  return absl::OkStatus();
}

// r is optional unless the probe is learned; when given it must match q.
absl::Status CheckProbeInput(absl::string_view fn, const Family& f, size_t r_size, int64_t want) {
  if (f.probe != RefProbe::kLearned && r_size == 0) return absl::OkStatus();
  return CheckSize(fn, "r", r_size, want);
}

constexpr double kInf = std::numeric_limits<double>::infinity();

// Row i of Q query rows against L keys: the visible keys form one contiguous range ending at
// L - Q + i (causal) or L - 1 (not). `k` and `v` point at key 0 of the right (batch, kv head).
void CausalRow(const double* q, const double* r, const double* k, const double* v, int num_q,
               int num_k, int i, int d, long stride, const Family& f, double* out,
               RowStats* stats, bool causal = true) {
  const int end = causal ? num_k - num_q + i : num_k - 1;
  if (end < 0) {
    std::fill(out, out + d, 0.0);
    if (stats) *stats = RowStats{-kInf, 0.0, std::vector<double>(d, 0.0)};
    return;
  }
  const int lo = f.window > 0 ? std::max(0, end - f.window + 1) : 0;
  AttendRow(q, r, k + lo * stride, v + lo * stride, end - lo + 1, d, stride, f, out, stats);
}

}  // namespace

namespace internal {

absl::Status CheckSize(absl::string_view fn, absl::string_view field, size_t got, int64_t want) {
  return ::parallax::ref::CheckSize(fn, field, got, want);
}

absl::Status CheckPrefillInputs(absl::string_view fn, const PrefillInputs& in, const Family& f) {
  if (auto s = CheckFamily(fn, f); !s.ok()) return s;
  if (auto s = CheckHeads(fn, in.batch, in.num_q_heads, in.num_kv_heads, in.head_dim); !s.ok()) return s;
  if (auto s = CheckLengths(fn, "seqlens_q", in.seqlens_q, in.batch, "max_seqlen_q", in.max_seqlen_q); !s.ok())
    return s;
  if (auto s = CheckLengths(fn, "seqlens_k", in.seqlens_k, in.batch, "max_seqlen_k", in.max_seqlen_k); !s.ok())
    return s;
  const int64_t b = in.batch, hq = in.num_q_heads, hkv = in.num_kv_heads, d = in.head_dim;
  const int64_t q_size = b * in.max_seqlen_q * hq * d, kv_size = b * in.max_seqlen_k * hkv * d;
  if (auto s = CheckSize(fn, "q", in.q.size(), q_size); !s.ok()) return s;
  if (auto s = CheckProbeInput(fn, f, in.r.size(), q_size); !s.ok()) return s;
  if (auto s = CheckSize(fn, "k", in.k.size(), kv_size); !s.ok()) return s;
  if (auto s = CheckSize(fn, "v", in.v.size(), kv_size); !s.ok()) return s;
  if (!in.causal && f.window > 0)
    return Bad(fn, "window", absl::StrCat("is ", f.window, ": a non-causal prefill (causal = false) sees every key"));
  return absl::OkStatus();
}

}  // namespace internal

namespace {

// Prefill, with the per-row statistics when asked for.
absl::StatusOr<PrefillResult> PrefillImpl(absl::string_view kFn, const PrefillInputs& in, const Family& f,
                                          bool with_stats) {
  if (auto s = internal::CheckPrefillInputs(kFn, in, f); !s.ok()) return s;
  const int64_t b_ = in.batch, hq = in.num_q_heads, hkv = in.num_kv_heads, d = in.head_dim;
  const int64_t lq = in.max_seqlen_q, lk = in.max_seqlen_k;
  const int64_t q_size = b_ * lq * hq * d;

  PrefillResult res;
  res.out.assign(q_size, 0.0);  // rows past seqlens_q stay zero
  if (with_stats) {
    res.lse.assign(b_ * hq * lq, -kInf);
    res.tbar.assign(b_ * hq * lq, 0.0);
    res.vbar.assign(q_size, 0.0);
  }
  const int64_t group = hq / hkv;
  for (int64_t b = 0; b < b_; ++b) {
    for (int i = 0; i < in.seqlens_q[b]; ++i) {
      for (int64_t h = 0; h < hq; ++h) {
        const int64_t qi = ((b * lq + i) * hq + h) * d;
        const int64_t ki = (b * lk * hkv + h / group) * d;
        RowStats st;
        CausalRow(in.q.data() + qi, in.r.empty() ? nullptr : in.r.data() + qi, in.k.data() + ki,
                  in.v.data() + ki, in.seqlens_q[b], in.seqlens_k[b], i, in.head_dim, hkv * d, f,
                  res.out.data() + qi, with_stats ? &st : nullptr, in.causal);
        if (with_stats) {
          res.lse[(b * hq + h) * lq + i] = st.lse;
          res.tbar[(b * hq + h) * lq + i] = st.tbar;
          std::copy(st.vbar.begin(), st.vbar.end(), res.vbar.begin() + qi);
        }
      }
    }
  }
  return res;
}

// Decode, with the per-row statistics when asked for.
absl::StatusOr<PrefillResult> DecodeImpl(absl::string_view kFn, const DecodeInputs& in, const Family& f,
                                         bool with_stats) {
  if (auto s = CheckFamily(kFn, f); !s.ok()) return s;
  if (auto s = CheckHeads(kFn, in.batch, in.num_q_heads, in.num_kv_heads, in.head_dim); !s.ok())
    return s;
  if (auto s = CheckLengths(kFn, "seqlens", in.seqlens, in.batch, "max_seqlen", in.max_seqlen);
      !s.ok())
    return s;
  const int64_t b_ = in.batch, hq = in.num_q_heads, hkv = in.num_kv_heads, d = in.head_dim;
  const int64_t q_size = b_ * hq * d, kv_size = b_ * in.max_seqlen * hkv * d;
  if (auto s = CheckSize(kFn, "q", in.q.size(), q_size); !s.ok()) return s;
  if (auto s = CheckProbeInput(kFn, f, in.r.size(), q_size); !s.ok()) return s;
  if (auto s = CheckSize(kFn, "k", in.k.size(), kv_size); !s.ok()) return s;
  if (auto s = CheckSize(kFn, "v", in.v.size(), kv_size); !s.ok()) return s;

  PrefillResult res;
  res.out.assign(q_size, 0.0);
  if (with_stats) {
    res.lse.assign(b_ * hq, -kInf);
    res.tbar.assign(b_ * hq, 0.0);
    res.vbar.assign(q_size, 0.0);
  }
  const int64_t group = hq / hkv;
  for (int64_t b = 0; b < b_; ++b) {
    for (int64_t h = 0; h < hq; ++h) {
      const int64_t qi = (b * hq + h) * d;
      const int64_t ki = (b * in.max_seqlen * hkv + h / group) * d;
      RowStats st;
      CausalRow(in.q.data() + qi, in.r.empty() ? nullptr : in.r.data() + qi, in.k.data() + ki,
                in.v.data() + ki, 1, in.seqlens[b], 0, in.head_dim, hkv * d, f, res.out.data() + qi,
                with_stats ? &st : nullptr);
      if (with_stats) {
        res.lse[b * hq + h] = st.lse;
        res.tbar[b * hq + h] = st.tbar;
        std::copy(st.vbar.begin(), st.vbar.end(), res.vbar.begin() + qi);
      }
    }
  }
  return res;
}

}  // namespace

void AttendRow(const double* q, const double* r, const double* k, const double* v, int n,
               int head_dim, long key_stride, const Family& f, double* out, RowStats* stats) {
  const int d = head_dim;
  std::fill(out, out + d, 0.0);
  if (stats) *stats = RowStats{-kInf, 0.0, std::vector<double>(d, 0.0)};
  if (n <= 0) return;
  const double tau = f.tau < 0 ? 1.0 / std::sqrt(static_cast<double>(d)) : f.tau;

  // Max-subtraction makes exp safe for |s1| ~ 1e4; every later quantity is a ratio, so the
  // common factor exp(-m) cancels.
  std::vector<double> w(n);
  double m = -std::numeric_limits<double>::infinity();
  for (int j = 0; j < n; ++j) {
    w[j] = tau * Dot(q, k + j * key_stride, d);
    m = std::max(m, w[j]);
  }
  double wsum = 0;
  for (int j = 0; j < n; ++j) wsum += (w[j] = std::exp(w[j] - m));
  if (stats) {
    stats->lse = m + std::log(wsum);
    for (int j = 0; j < n; ++j)
      for (int x = 0; x < d; ++x) stats->vbar[x] += w[j] * v[j * key_stride + x];
    for (int x = 0; x < d; ++x) stats->vbar[x] /= wsum;
  }
  if (f.probe == RefProbe::kSolved) {
    if (stats) stats->tbar = std::numeric_limits<double>::quiet_NaN();
    return SolvedRow(q, k, v, n, d, key_stride, w, f, out);
  }

  const bool probe = f.probe == RefProbe::kLearned && r != nullptr;
  double d1 = 0, d2 = 0;
  std::vector<double> o1(d, 0.0), o2(d, 0.0);
  for (int j = 0; j < n; ++j) {
    const double* vj = v + j * key_stride;
    const double p2 = probe ? w[j] * Dot(r, k + j * key_stride, d) : 0.0;
    d1 += w[j];
    d2 += p2;
    for (int x = 0; x < d; ++x) {
      o1[x] += w[j] * vj[x];
      o2[x] += p2 * vj[x];
    }
  }
  const double tbar = d2 / d1;
  if (stats) stats->tbar = tbar;
  if (f.affine == RefAffine::kPlain) {
    for (int x = 0; x < d; ++x) out[x] = o1[x] / d1 * (1 + tbar) - o2[x] / d1;
    return;
  }
  const double delta = GuardDelta(1 - (tbar - (probe ? Dot(r, q, d) : 0.0)), f.eps);
  for (int x = 0; x < d; ++x) {
    const double vbar = o1[x] / d1;
    const double cov = o2[x] / d1 - tbar * vbar;  // (Cov_w(v, k) r)_x
    out[x] = vbar - cov / delta;
  }
}

absl::StatusOr<std::vector<double>> Decode(const DecodeInputs& in, const Family& f) {
  absl::StatusOr<PrefillResult> r = DecodeImpl("Decode", in, f, /*with_stats=*/false);
  if (!r.ok()) return r.status();
  return std::move(r->out);
}

absl::StatusOr<PrefillResult> DecodeWithStats(const DecodeInputs& in, const Family& f) {
  if (f.probe == RefProbe::kSolved)
    return absl::UnimplementedError("DecodeWithStats: probe kSolved has no given probe, so no tbar");
  return DecodeImpl("DecodeWithStats", in, f, /*with_stats=*/true);
}

absl::StatusOr<std::vector<double>> Prefill(const PrefillInputs& in, const Family& f) {
  absl::StatusOr<PrefillResult> r = PrefillImpl("Prefill", in, f, /*with_stats=*/false);
  if (!r.ok()) return r.status();
  return std::move(r->out);
}

absl::StatusOr<PrefillResult> PrefillWithStats(const PrefillInputs& in, const Family& f) {
  if (f.probe == RefProbe::kSolved)
    return absl::UnimplementedError("PrefillWithStats: probe kSolved has no given probe, so no tbar");
  return PrefillImpl("PrefillWithStats", in, f, /*with_stats=*/true);
}

absl::Status MergeStates(const double* out_a, const RowStats& a, const double* out_b, const RowStats& b,
                         int head_dim, const Family& f, double rq, double* out, RowStats* merged) {
  constexpr absl::string_view kFn = "MergeStates";
  const int d = head_dim;
  if (d <= 0) return Bad(kFn, "head_dim", absl::StrCat("is ", d, ", must be > 0"));
  if (f.probe == RefProbe::kSolved)
    return absl::UnimplementedError("MergeStates: probe kSolved carries no probe to merge its parts by");
  const bool learned = f.probe == RefProbe::kLearned;
  for (const auto& [part, name] : {std::pair<const RowStats*, const char*>{&a, "a.vbar"}, {&b, "b.vbar"}})
    if (!part->vbar.empty() && part->vbar.size() != static_cast<size_t>(d))
      return Bad(kFn, name, absl::StrCat("has ", part->vbar.size(), " elements, expected ", d, " (or none)"));
  // The weights of the parts; an absent part (no visible key) counts for nothing, NaN or not.
  const double m = std::max(a.lse, b.lse);
  RowStats res{-kInf, 0.0, std::vector<double>(d, 0.0)};
  std::vector<double> o(d, 0.0);
  if (m > -kInf) {
    const double wa = a.lse > -kInf ? std::exp(a.lse - m) : 0.0, wb = b.lse > -kInf ? std::exp(b.lse - m) : 0.0;
    res.lse = m + std::log(wa + wb);
    const double la = wa / (wa + wb), lb = wb / (wa + wb);
    struct Part {
      const double* out;
      const RowStats* st;
      double l;
    };
    const Part parts[2] = {{out_a, &a, la}, {out_b, &b, lb}};
    auto vbar_of = [&](const Part& p, int x) {
      if (!learned) return p.out[x];  // softmax: the output is vbar
      return p.st->vbar.empty() ? 0.0 : p.st->vbar[x];
    };
    for (const Part& p : parts)
      if (p.l > 0) res.tbar += p.l * (learned ? p.st->tbar : 0.0);
    for (int x = 0; x < d; ++x)
      for (const Part& p : parts)
        if (p.l > 0) res.vbar[x] += p.l * vbar_of(p, x);
    if (!learned) {
      o = res.vbar;
    } else if (f.affine == RefAffine::kPlain) {
      for (int x = 0; x < d; ++x)
        for (const Part& p : parts)
          if (p.l > 0) o[x] += p.l * (p.out[x] + (res.tbar - p.st->tbar) * vbar_of(p, x));
    } else {
      const double g = GuardDelta(1 - (res.tbar - rq), f.eps);
      for (int x = 0; x < d; ++x) {
        double c = 0;  // Cov_w(v, k) r over both parts, centred on the merged tbar
        for (const Part& p : parts) {
          if (p.l <= 0) continue;
          const double ga = GuardDelta(1 - (p.st->tbar - rq), f.eps);
          c += p.l * ((vbar_of(p, x) - p.out[x]) * ga + (p.st->tbar - res.tbar) * vbar_of(p, x));
        }
        o[x] = res.vbar[x] - c / g;
      }
    }
  }
  std::copy(o.begin(), o.end(), out);
  if (merged) *merged = std::move(res);
  return absl::OkStatus();
}

ErrorStats Compare(const std::vector<double>& got, const std::vector<double>& ref) {
  ErrorStats st;
  for (double g : got)
    if (!std::isfinite(g)) ++st.non_finite;
  // Non-finite output or a shape mismatch must fail any tolerance check, never read as small.
  if (st.non_finite > 0 || got.size() != ref.size()) {
    st.rel_frobenius = st.max_rel_element = kInf;
    return st;
  }
  double diff2 = 0, ref2 = 0, got2 = 0, max_diff = 0, max_ref = 0, max_got = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double e = got[i] - ref[i];
    diff2 += e * e;
    ref2 += ref[i] * ref[i];
    got2 += got[i] * got[i];
    max_diff = std::max(max_diff, std::abs(e));
    max_ref = std::max(max_ref, std::abs(ref[i]));
    max_got = std::max(max_got, std::abs(got[i]));
  }
  // An all-zero reference (e.g. seqlen 0) is measured against got's own size instead.
  const double norm = ref2 > 0 ? std::sqrt(ref2) : std::sqrt(got2);
  const double peak = max_ref > 0 ? max_ref : max_got;
  st.rel_frobenius = norm > 0 ? std::sqrt(diff2) / norm : 0.0;
  st.max_rel_element = peak > 0 ? max_diff / peak : 0.0;
  return st;
}

}  // namespace parallax::ref
