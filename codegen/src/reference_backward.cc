// Backward of the float64 reference prefill (PrefillBackward, reference.h). It follows the
// algorithm a GPU kernel uses: the forward's per-row statistics (lse, tbar, vbar) and out are
// saved, and one more pass over each row's visible keys rebuilds w_j from lse and forms the
// score gradients ds1_j, ds2_j and the effective weights c_j from per-row scalars.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "parallax/codegen/reference.h"
#include "reference_internal.h"

namespace parallax::ref {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

double Dot(const double* a, const double* b, int n) { return std::inner_product(a, a + n, b, 0.0); }

// The per-row scalars of the backward (reference.h): u scales the probe branch, kappa and rho
// carry the derivative through tbar and r.q, and dd = sum_j w_j a_j is the softmax centring.
struct RowScalars {
  double u, kappa, rho, dd;
};

RowScalars Scalars(const Family& f, double dsum, double g, double tbar, double rq) {
  RowScalars s{1.0, g, 0.0, 0.0};
  if (f.affine == RefAffine::kAmplified) {
    const double delta = 1 - (tbar - rq);
    if (std::abs(delta) < f.eps) {  // guarded: delta is the constant eps sign(delta)
      s.u = 1 / (delta < 0 ? -f.eps : f.eps);
      s.kappa = s.u * g;
    } else {
      s.u = 1 / delta;
      s.kappa = s.u * dsum;
      s.rho = s.u * (g - dsum);
    }
  }
  s.dd = dsum + s.kappa * tbar;
  return s;
}

}  // namespace

absl::StatusOr<PrefillGrads> PrefillBackward(const PrefillInputs& in, const std::vector<double>& dout,
                                             const Family& f) {
  constexpr absl::string_view kFn = "PrefillBackward";
  if (f.probe == RefProbe::kSolved)
    return absl::UnimplementedError("PrefillBackward: probe kSolved is forward only");
  if (auto s = internal::CheckPrefillInputs(kFn, in, f); !s.ok()) return s;
  const int64_t b_ = in.batch, hq = in.num_q_heads, hkv = in.num_kv_heads;
  const int d = in.head_dim;
  const int64_t lq = in.max_seqlen_q, lk = in.max_seqlen_k;
  if (auto s = internal::CheckSize(kFn, "dout", dout.size(), b_ * lq * hq * d); !s.ok()) return s;

  // The forward pass, keeping what a kernel saves: out, lse, tbar, vbar.
  absl::StatusOr<PrefillResult> fwd = PrefillWithStats(in, f);
  if (!fwd.ok()) return fwd.status();

  PrefillGrads gr;
  gr.dq.assign(in.q.size(), 0.0);
  gr.dr.assign(in.r.size(), 0.0);
  gr.dk.assign(in.k.size(), 0.0);
  gr.dv.assign(in.v.size(), 0.0);
  const bool learned = f.probe == RefProbe::kLearned && !in.r.empty();  // otherwise r = 0
  const double tau = f.tau < 0 ? 1.0 / std::sqrt(static_cast<double>(d)) : f.tau;
  const int64_t group = hq / hkv, stride = hkv * d;
  std::vector<double> dq_row(d), dr_row(d);
  for (int64_t b = 0; b < b_; ++b) {
    const int nq = in.seqlens_q[b], nk = in.seqlens_k[b];
    for (int i = 0; i < nq; ++i) {
      // Prefill's visible keys: [lo, end], causal aligned to the end of the keys.
      const int end = in.causal ? nk - nq + i : nk - 1;
      if (end < 0) continue;  // no visible key: the row contributes nothing
      const int lo = f.window > 0 ? std::max(0, end - f.window + 1) : 0;
      for (int64_t h = 0; h < hq; ++h) {
        const int64_t qi = ((b * lq + i) * hq + h) * d;
        const int64_t si = (b * hq + h) * lq + i;  // lse, tbar: [B][Hq][Lq_max]
        const int64_t k0 = (b * lk * hkv + h / group) * d;
        const double lse = fwd->lse[si], tbar = fwd->tbar[si];
        if (!(lse > -kInf)) continue;
        const double* q = in.q.data() + qi;
        const double* r = learned ? in.r.data() + qi : nullptr;
        const double* dout_i = dout.data() + qi;
        const double dsum = Dot(dout_i, fwd->out.data() + qi, d);
        const double g = Dot(dout_i, fwd->vbar.data() + qi, d);
        const RowScalars s = Scalars(f, dsum, g, tbar, r ? Dot(r, q, d) : 0.0);
        std::fill(dq_row.begin(), dq_row.end(), 0.0);
        std::fill(dr_row.begin(), dr_row.end(), 0.0);
        for (int j = lo; j <= end; ++j) {
          const double* kj = in.k.data() + k0 + j * stride;
          const double* vj = in.v.data() + k0 + j * stride;
          double* dkj = gr.dk.data() + k0 + j * stride;
          double* dvj = gr.dv.data() + k0 + j * stride;
          const double w = std::exp(tau * Dot(q, kj, d) - lse);
          const double s2 = r ? Dot(r, kj, d) : 0.0;
          const double gj = Dot(dout_i, vj, d);
          const double c = w * (1 - s.u * (s2 - tbar));
          const double a = gj * (1 - s.u * (s2 - tbar)) + s.kappa * s2;
          const double ds1 = w * (a - s.dd);
          const double ds2 = w * (s.kappa - s.u * gj);
          for (int x = 0; x < d; ++x) {
            dvj[x] += c * dout_i[x];
            dkj[x] += tau * ds1 * q[x];
            dq_row[x] += tau * ds1 * kj[x];
          }
          if (r) {
            for (int x = 0; x < d; ++x) {
              dkj[x] += ds2 * r[x];
              dr_row[x] += ds2 * kj[x];
            }
          }
        }
        double* dq = gr.dq.data() + qi;
        for (int x = 0; x < d; ++x) dq[x] = dq_row[x] + (r ? s.rho * r[x] : 0.0);
        if (r) {
          double* dr = gr.dr.data() + qi;
          for (int x = 0; x < d; ++x) dr[x] = dr_row[x] + s.rho * q[x];
        }
      }
    }
  }
  return gr;
}

}  // namespace parallax::ref
