// Float64 CPU reference of the whole Parallax family (see ../shared/parallax-family.md).
//
// Every GPU kernel is tested against this. It is written for clarity, not speed: it forms
// the visible key set for each query row explicitly and evaluates the closed forms.
#pragma once

#include <vector>

#include "absl/status/statusor.h"

namespace parallax::ref {

enum class RefProbe { kNone, kLearned, kSolved };  // kSolved = LLA, r = rho solved per row
enum class RefAffine { kPlain, kAmplified };

struct Family {
  RefProbe probe = RefProbe::kLearned;
  RefAffine affine = RefAffine::kPlain;
  double tau = -1.0;      // qk_scale; < 0 means 1/sqrt(D)
  int window = 0;         // 0: no window; W > 0: key j visible to row i only if j > L-Q+i-W
  double eps = 1e-6;      // amplified / LLA delta guard
  double lambda = 1e-3;   // LLA ridge regulariser (probe kSolved only)
};

// A query row's statistics, what a backward pass (or a merge of partials) needs; the
// kernels write the same (kernel_abi.h, parallax.h). Over the row's visible keys j, with
// w_j = exp(tau q.k_j - lse) (the softmax weights) and s2_j = r.k_j (unscaled):
//   lse  = ln(sum_j exp(tau q.k_j))   natural log, tau included: FlashAttention's softmax_lse
//   tbar = sum_j w_j s2_j              the weighted mean probe score
//   vbar = sum_j w_j v_j               the softmax output (the kernels' O1/d1), [D]
// No visible key: lse = -inf, tbar = 0, vbar zeros. Probe kNone (or a null r): tbar = 0.
// kSolved has no given probe: tbar is NaN there (vbar is still the softmax output).
// Backward: w_j follows from lse alone, and the output is sum_j w_j (1 - (s2_j - tbar)) v_j
// (amplified: (s2_j - tbar) / delta, delta = 1 - (tbar - r.q), guarded by eps), so the
// effective weights follow from (lse, tbar).
// Merge: parts over disjoint key sets A combine with l_A = exp(lse_A - lse), lse =
// ln(sum_A exp(lse_A)): tbar = sum_A l_A tbar_A, vbar = sum_A l_A vbar_A, softmax out =
// sum_A l_A out_A, and plain Parallax out = sum_A l_A (out_A + (tbar - tbar_A) vbar_A) --
// a Parallax output alone does not merge (MergeStates below has every member).
struct RowStats {
  double lse = 0, tbar = 0;
  std::vector<double> vbar;  // [D]
};

// One query row against n visible keys (rows of K and V, each `key_stride` doubles apart).
// r may be null for probe kNone / kSolved. n == 0 yields zeros (documented convention).
// Probe kNone ignores r (amplified then has delta = 1, i.e. softmax); a null r with kLearned
// acts as r = 0. kSolved (LLA) carries its own boundary factor, so `affine` does not apply,
// and its eps guard acts on the unnormalised delta = omega - mu.rho. `stats`, when given,
// receives the row's statistics.
void AttendRow(const double* q, const double* r, const double* k, const double* v, int n,
               int head_dim, long key_stride, const Family& f, double* out,
               RowStats* stats = nullptr);

// Decode: q, r [B][Hq][D]; k, v [B][Lmax][Hkv][D] (logical, contiguous); seqlens[b] <= Lmax.
// Returns out [B][Hq][D]. Query head h reads kv head h / (Hq/Hkv).
// r may be empty unless the probe is kLearned. Bad shapes, lengths, window < 0, eps <= 0
// (amplified / solved) or lambda <= 0 (solved) give InvalidArgumentError naming the field.
struct DecodeInputs {
  int batch = 0, num_q_heads = 0, num_kv_heads = 0, head_dim = 0, max_seqlen = 0;
  std::vector<int> seqlens;
  std::vector<double> q, r, k, v;
};
absl::StatusOr<std::vector<double>> Decode(const DecodeInputs& in, const Family& f);

// Prefill, causal aligned to the end: row i of a sequence with Q queries and L keys sees
// keys j <= L - Q + i (and j > L - Q + i - W with a window); with causal = false every row
// sees all L keys (a window is then refused: 'window' InvalidArgument).
// q, r [B][Lq_max][Hq][D]; k, v [B][Lk_max][Hkv][D]; per-sequence lengths seqlens_q/k.
// Returns out [B][Lq_max][Hq][D] (rows past seqlens_q[b] are zero).
struct PrefillInputs {
  int batch = 0, num_q_heads = 0, num_kv_heads = 0, head_dim = 0;
  int max_seqlen_q = 0, max_seqlen_k = 0;
  std::vector<int> seqlens_q, seqlens_k;
  std::vector<double> q, r, k, v;
  bool causal = true;
};
absl::StatusOr<std::vector<double>> Prefill(const PrefillInputs& in, const Family& f);

// Prefill and its per-row statistics (RowStats): lse and tbar [B][Hq][max_seqlen_q], the
// kernels' padded layout, and vbar [B][Lq_max][Hq][D] like out; rows past seqlens_q[b] read
// as rows without keys (-inf, 0, zeros). Probe kSolved: UnimplementedError.
struct PrefillResult {
  std::vector<double> out;  // what Prefill returns
  std::vector<double> lse, tbar;
  std::vector<double> vbar;
};
absl::StatusOr<PrefillResult> PrefillWithStats(const PrefillInputs& in, const Family& f);

// Decode and its statistics: out and vbar [B][Hq][D], lse and tbar [B][Hq] (the C API's
// decode layout for one token). Probe kSolved: UnimplementedError.
absl::StatusOr<PrefillResult> DecodeWithStats(const DecodeInputs& in, const Family& f);

// The exact merge of one query row's two partial attentions over disjoint key sets (what a
// cascade computes: a shared prefix non-causally, each sequence's own keys causally). Each
// part is its output (head_dim values) and its RowStats (lse, tbar, vbar; an empty vbar
// reads as zeros, and probe kNone needs none: there vbar = out). rq = r.q of the row, read
// by amplified only. Writes the merged output (may alias out_a or out_b) and, when given,
// its statistics. With l_A = exp(lse_A - lse), lse = ln(sum_A exp(lse_A)):
//   softmax (probe kNone, either affine):  out = sum_A l_A out_A
//   plain:      out = sum_A l_A (out_A + (tbar - tbar_A) vbar_A)
//   amplified:  C_A = (vbar_A - out_A) g(1 - (tbar_A - rq)) (the part's Cov_w(v, k) r, as
//               out_A = vbar_A - C_A / g(...)), C = sum_A l_A (C_A + (tbar_A - tbar) vbar_A),
//               out = vbar - C / g(1 - (tbar - rq)); g is the eps guard of AttendRow.
// A part with lse = -inf (no visible key) is absent whatever its other values; both absent:
// out zeros, lse -inf, tbar 0, vbar zeros. InvalidArgument on a vbar of the wrong size or
// head_dim <= 0; kSolved: Unimplemented (its parts carry no probe to merge by).
absl::Status MergeStates(const double* out_a, const RowStats& a, const double* out_b, const RowStats& b,
                         int head_dim, const Family& f, double rq, double* out, RowStats* merged = nullptr);

// Error metrics used by every correctness test.
struct ErrorStats {
  double rel_frobenius = 0;   // ||got - ref|| / ||ref||
  double max_rel_element = 0; // max |got - ref| / (max |ref| over the tensor)
  long non_finite = 0;        // NaN/Inf in got
};
// Zero references fall back to got's own norm / peak (0 when both are zero). Any non-finite
// element in got, or a size mismatch, makes both relative errors +inf.
ErrorStats Compare(const std::vector<double>& got, const std::vector<double>& ref);


// ---- Backward of prefill (gradients; the derivation is in docs/backward.md) -------------
// The gradients of L = sum(dout * out) with respect to q, r, k and v, computed the way a GPU
// kernel does: from the forward's saved per-row statistics (lse, tbar, vbar) and out, one
// more pass over the row's visible keys (the visibility of Prefill). Per query row i (one
// head; GQA: query head h reads kv head h / (Hq/Hkv)), with tau < 0 meaning 1/sqrt(D):
//   w_j = exp(tau q.k_j - lse),  s2_j = r.k_j (unscaled),  g_j = dout.v_j,
//   Dsum = dout.out,  G = dout.vbar.
//   plain:      u = 1,                kappa = G,        rho = 0
//   amplified:  delta = 1 - (tbar - r.q);
//               |delta| <  eps (guarded, delta -> eps sign(delta), a constant):
//                           u = 1/(eps sign(delta)), kappa = u G,  rho = 0
//               |delta| >= eps:  u = 1/delta,  kappa = u Dsum,  rho = u (G - Dsum)
//   Dd   = Dsum + kappa tbar
//   a_j  = g_j (1 - u (s2_j - tbar)) + kappa s2_j
//   ds1_j = w_j (a_j - Dd)     (dL/ds1_j, s1_j = tau q.k_j)
//   ds2_j = w_j (kappa - u g_j)  (dL/ds2_j)
//   c_j  = w_j (1 - u (s2_j - tbar))   (the effective weight of v_j)
//   dv_j += c_j dout_i;   dk_j += tau ds1_j q_i + ds2_j r_i;
//   dq_i  = tau sum_j ds1_j k_j + rho r_i;   dr_i = sum_j ds2_j k_j + rho q_i.
// dk and dv sum over every query row and over the query heads of the kv head's group.
// Probe kNone (or kLearned with an empty r) reads as r = 0: s2 = 0, tbar = 0, delta = 1
// (guarded only when eps > 1), and the formulas reduce to softmax's backward.
struct PrefillGrads {
  std::vector<double> dq, dr, dk, dv;  // shapes of q, r, k, v (dr empty when r is)
};
// dout [B][Lq_max][Hq][D] like out. Gradients of L = sum(dout * out) with respect to q, r, k,
// v for the inputs and family of Prefill. Rows past seqlens_q[b] and keys past seqlens_k[b]
// get zero gradients, as do rows without a visible key; probe kNone gives dr all zeros (sized
// like r). Validates like Prefill (InvalidArgument naming the field, 'dout' for its size);
// probe kSolved: UnimplementedError (forward only).
absl::StatusOr<PrefillGrads> PrefillBackward(const PrefillInputs& in, const std::vector<double>& dout,
                                             const Family& f);

}  // namespace parallax::ref
