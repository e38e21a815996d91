// Host-only validation of plx_merge_states's arguments (parallax.h, "Statistics and merging
// partial attentions"), building the merge kernel's parameters (kernel_abi.h PlxMergeParams)
// straight from the descriptors. Every message starts with the argument it is about.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "c_api_internal.h"

namespace parallax::capi {
namespace {

#define PLX_RETURN_IF_ERROR(expr)                   \
  do {                                              \
    if (absl::Status plx_s_ = (expr); !plx_s_.ok()) \
      return plx_s_;                                \
  } while (0)

constexpr int64_t kMaxLen = 0x7fffffff;

int64_t ElementBytes(plx_dtype d) { return d == PLX_BF16 || d == PLX_FP16 ? 2 : 4; }

// [lo, hi): the bytes from a tensor's first element to the end of its last; empty when any
// dimension is 0.
struct ByteRange {
  uintptr_t lo = 0, hi = 0;
};
ByteRange RangeOf(const Tensor& t) {
  int64_t last = 0;
  for (int i = 0; i < t.ndim; ++i) {
    if (t.shape[i] == 0) return {};
    last += (t.shape[i] - 1) * t.strides[i];  // bounded by CheckOffsets (Describe)
  }
  const uintptr_t lo = reinterpret_cast<uintptr_t>(t.data);
  return {lo, lo + static_cast<uintptr_t>((last + 1) * ElementBytes(t.dtype))};
}

// The very same tensor: pointer, dtype, shape and strides.
bool SameTensor(const Tensor& a, const Tensor& b) {
  if (a.data != b.data || a.dtype != b.dtype || a.ndim != b.ndim) return false;
  for (int i = 0; i < a.ndim; ++i)
    if (a.shape[i] != b.shape[i] || a.strides[i] != b.strides[i]) return false;
  return true;
}

// How row (b, l, h) indexes a tensor: its strides along batch, token and head (0 where the
// layout has no such dimension).
struct RowStrides {
  long long b = 0, l = 0, h = 0;
};

// The layout every tensor of the call follows, from out_a and packed (parallax.h).
struct Layout {
  int64_t batch = 0, len = 0, heads = 0, dim = 0;
  int out_ndim = 0, stats_ndim = 0;
  int64_t out_shape[PLX_MAX_DIMS] = {}, stats_shape[PLX_MAX_DIMS] = {};
  bool packed = false;
  const char* out_layout = "";
  const char* stats_layout = "";
  RowStrides Rows(const Tensor& t) const {  // a 16-bit tensor shaped like out
    if (out_ndim == 4) return {t.strides[0], t.strides[1], t.strides[2]};
    if (packed) return {0, t.strides[0], t.strides[1]};
    return {t.strides[0], 0, t.strides[1]};
  }
  RowStrides Stats(const Tensor& t) const {  // a statistic shaped like lse_a
    if (stats_ndim == 3) return {t.strides[0], t.strides[2], t.strides[1]};
    if (packed) return {0, t.strides[1], t.strides[0]};
    return {t.strides[0], 0, t.strides[1]};
  }
};

absl::Status SameShapeAs(const Tensor& t, int ndim, const int64_t* shape, const char* what, const char* layout) {
  bool same = t.ndim == ndim;
  for (int i = 0; same && i < ndim; ++i) same = t.shape[i] == shape[i];
  if (!same)
    return Invalid(t.name, ": shape ", t.shape_str(), " does not match ", what, " ", layout, " = ",
                   ShapeString(shape, ndim));
  return absl::OkStatus();
}

// The layout from out_a (and, for a 4-D out of one token, lse_a's rank).
absl::StatusOr<Layout> LayoutOf(const Tensor& out_a, const plx_tensor& lse_a, int32_t packed) {
  Layout l;
  if (packed != 0 && packed != 1) return Invalid("packed=", packed, ": must be 0 or 1");
  l.packed = packed == 1;
  l.out_ndim = out_a.ndim;
  std::memcpy(l.out_shape, out_a.shape, sizeof(l.out_shape));
  if (out_a.ndim == 4) {
    if (l.packed)
      return Invalid("packed=1: out_a is 4-D ([B, L, Hq, D]); the packed layout is out [Tq, Hq, D] with "
                     "stats [Hq, Tq]");
    l.batch = out_a.shape[0];
    l.len = out_a.shape[1];
    l.heads = out_a.shape[2];
    // One token's stats may drop the token dimension (decode's [B, Hq]).
    l.stats_ndim = l.len == 1 && lse_a.ndim == 2 ? 2 : 3;
    l.stats_shape[0] = l.batch;
    l.stats_shape[1] = l.heads;
    l.stats_shape[2] = l.len;
    l.out_layout = "[B, L, Hq, D]";
    l.stats_layout = l.stats_ndim == 2 ? "[B, Hq]" : "[B, Hq, L]";
  } else if (out_a.ndim == 3) {
    l.heads = out_a.shape[1];
    l.stats_ndim = 2;
    if (l.packed) {
      l.batch = 1;
      l.len = out_a.shape[0];
      l.stats_shape[0] = l.heads;
      l.stats_shape[1] = l.len;
      l.out_layout = "[Tq, Hq, D] (packed=1)";
      l.stats_layout = "[Hq, Tq] (packed=1)";
    } else {
      l.batch = out_a.shape[0];
      l.len = 1;
      l.stats_shape[0] = l.batch;
      l.stats_shape[1] = l.heads;
      l.out_layout = "[B, Hq, D] (decode; packed=1 for [Tq, Hq, D])";
      l.stats_layout = "[B, Hq] (decode; packed=1 for [Hq, Tq])";
    }
  } else {
    return Invalid("out_a: ndim=", out_a.ndim, ": must be 4 ([B, L, Hq, D]) or 3 ([B, Hq, D] decode, [Tq, Hq, D] packed)");
  }
  l.dim = out_a.shape[out_a.ndim - 1];
  if (l.dim != 64 && l.dim != 128 && l.dim != 256)
    return Unsupported("out_a: head_dim=", l.dim, " (last dimension): must be 64, 128 or 256");
  if (l.len > kMaxLen || l.heads > kMaxLen)
    return Unsupported("out_a: shape ", out_a.shape_str(), ": tokens and heads must stay below 2^31");
  return l;
}

}  // namespace

absl::Status CheckDisjoint(const Tensor& t, const Tensor& other) {
  const ByteRange a = RangeOf(t), b = RangeOf(other);
  if (a.lo == a.hi || b.lo == b.hi || a.hi <= b.lo || b.hi <= a.lo) return absl::OkStatus();
  return Invalid(t.name, ": overlaps ", other.name, " (data=", absl::StrFormat("%p", t.data), " and ",
                 absl::StrFormat("%p", other.data), "): an output must not share memory with another tensor");
}

absl::StatusOr<MergeCall> TranslateMergeArgs(const plx_merge_args& a) {
  MergeCall c;
  if (a.probe != PLX_PROBE_NONE && a.probe != PLX_PROBE_LEARNED)
    return Invalid("probe=", static_cast<int>(a.probe), ": must be PLX_PROBE_NONE or PLX_PROBE_LEARNED");
  const bool learned = a.probe == PLX_PROBE_LEARNED;
  switch (a.affine) {
    case PLX_AFFINE_PLAIN: c.kernel.affine = Affine::kPlain; break;
    case PLX_AFFINE_AMPLIFIED: c.kernel.affine = Affine::kAmplified; break;
    default:
      return Invalid("affine=", static_cast<int>(a.affine), ": must be PLX_AFFINE_PLAIN or PLX_AFFINE_AMPLIFIED");
  }
  const bool amplified = learned && c.kernel.affine == Affine::kAmplified;
  if (amplified && !(std::isfinite(a.eps) && a.eps > 0.f))
    return Invalid("eps=", a.eps, ": must be a positive finite number with amplified affine");

  absl::StatusOr<Tensor> out_a = Describe(a.out_a, "out_a");
  if (!out_a.ok()) return out_a.status();
  if (out_a->dtype != PLX_BF16 && out_a->dtype != PLX_FP16)
    return Unsupported("out_a: dtype=", DTypeName(out_a->dtype), ": must be bf16 or fp16");
  absl::StatusOr<Layout> layout = LayoutOf(*out_a, a.lse_a, a.packed);
  if (!layout.ok()) return layout.status();
  const Layout& l = *layout;

  // Every tensor given is checked, whether or not this probe reads it; `need` says which
  // must be given.
  struct Given {
    Tensor t;
    bool present = false;
  };
  // Why a tensor must be given: the parts' out and lse always; vbar and tbar for probe
  // learned; q and r for the amplified affine's r.q.
  auto required = [&](const char* name) {
    const std::string n = name;
    if (n.rfind("vbar_", 0) == 0 || n.rfind("tbar_", 0) == 0)
      return Invalid(name, ": required with probe learned (PLX_PROBE_NONE merges softmax parts without it)");
    if (n == "q" || n == "r") return Invalid(name, ": required with amplified affine (the merge needs r.q of each row)");
    return Invalid(name, ": required (data is NULL)");
  };
  auto row_tensor = [&](const plx_tensor& d, const char* name, bool need, bool output) -> absl::StatusOr<Given> {
    Given g;
    if (d.data == nullptr) {
      if (need) return required(name);
      return g;
    }
    absl::StatusOr<Tensor> t = Describe(d, name);
    if (!t.ok()) return t.status();
    PLX_RETURN_IF_ERROR(CheckSameDType(*t, *out_a));
    PLX_RETURN_IF_ERROR(SameShapeAs(*t, l.out_ndim, l.out_shape, "out_a's", l.out_layout));
    PLX_RETURN_IF_ERROR(CheckVectorLayout(*t));
    if (output) PLX_RETURN_IF_ERROR(CheckNoAliasing(*t));
    g.t = *t;
    g.present = true;
    return g;
  };
  auto stat_tensor = [&](const plx_tensor& d, const char* name, bool need, bool output) -> absl::StatusOr<Given> {
    Given g;
    if (d.data == nullptr) {
      if (need) return required(name);
      return g;
    }
    absl::StatusOr<Tensor> t = Describe(d, name);
    if (!t.ok()) return t.status();
    if (t->dtype != PLX_FLOAT32) return Invalid(name, ": dtype=", DTypeName(t->dtype), ": must be float32");
    PLX_RETURN_IF_ERROR(SameShapeAs(*t, l.stats_ndim, l.stats_shape, "the statistics'", l.stats_layout));
    if (reinterpret_cast<uintptr_t>(t->data) % 4 != 0)
      return Invalid(name, ": data=", absl::StrFormat("%p", t->data), ": must be 4-byte aligned");
    if (output) PLX_RETURN_IF_ERROR(CheckNoAliasing(*t));
    g.t = *t;
    g.present = true;
    return g;
  };

  struct Slot {
    const plx_tensor* desc;
    const char* name;
    bool stat, need, output;
  };
  const Slot slots[] = {
      {&a.out_a, "out_a", false, true, false},   {&a.vbar_a, "vbar_a", false, learned, false},
      {&a.lse_a, "lse_a", true, true, false},    {&a.tbar_a, "tbar_a", true, learned, false},
      {&a.out_b, "out_b", false, true, false},   {&a.vbar_b, "vbar_b", false, learned, false},
      {&a.lse_b, "lse_b", true, true, false},    {&a.tbar_b, "tbar_b", true, learned, false},
      {&a.q, "q", false, amplified, false},      {&a.r, "r", false, amplified, false},
      {&a.out, "out", false, true, true},        {&a.vbar, "vbar", false, false, true},
      {&a.lse, "lse", true, false, true},        {&a.tbar, "tbar", true, false, true},
  };
  constexpr int kSlots = sizeof(slots) / sizeof(slots[0]);
  Given given[kSlots];
  for (int i = 0; i < kSlots; ++i) {
    const Slot& s = slots[i];
    absl::StatusOr<Given> g = s.stat ? stat_tensor(*s.desc, s.name, s.need, s.output)
                                     : row_tensor(*s.desc, s.name, s.need, s.output);
    if (!g.ok()) return g.status();
    given[i] = *g;
  }
  // Outputs: in place over an input (the very same tensor) or apart from everything.
  for (int i = 0; i < kSlots; ++i) {
    if (!slots[i].output || !given[i].present) continue;
    for (int j = 0; j < kSlots; ++j) {
      if (j == i || !given[j].present) continue;
      if (!slots[j].output && SameTensor(given[i].t, given[j].t)) continue;  // in place
      if (absl::Status s = CheckDisjoint(given[i].t, given[j].t); !s.ok())
        return slots[j].output ? s
                               : Invalid(slots[i].name, ": overlaps ", slots[j].name,
                                         " without being the same tensor (in place needs the same pointer, shape "
                                         "and strides)");
    }
  }

  auto rows = [&](int i) {
    PlxMergeRows r{};
    if (!given[i].present) return r;
    const RowStrides s = l.Rows(given[i].t);
    r.data = given[i].t.data;
    r.stride_b = s.b;
    r.stride_l = s.l;
    r.stride_h = s.h;
    return r;
  };
  auto stats = [&](int i) {
    PlxMergeStats r{};
    if (!given[i].present) return r;
    const RowStrides s = l.Stats(given[i].t);
    r.data = static_cast<float*>(given[i].t.data);
    r.stride_b = s.b;
    r.stride_l = s.l;
    r.stride_h = s.h;
    return r;
  };
  PlxMergeParams& p = c.params;
  p.out_a = rows(0);
  p.lse_a = stats(2);
  p.out_b = rows(4);
  p.lse_b = stats(6);
  if (learned) {
    p.vbar_a = rows(1);
    p.tbar_a = stats(3);
    p.vbar_b = rows(5);
    p.tbar_b = stats(7);
  }
  if (amplified) {
    p.q = rows(8);
    p.r = rows(9);
  }
  p.out = rows(10);
  p.vbar = rows(11);
  p.lse = stats(12);
  p.tbar = stats(13);
  p.rows = l.batch * l.len * l.heads;  // each below 2^31: no overflow
  p.seqlen = static_cast<int>(l.len);
  p.heads = static_cast<int>(l.heads);
  p.eps = a.eps;
  c.kernel.dtype = out_a->dtype == PLX_BF16 ? DType::kBF16 : DType::kFP16;
  c.kernel.head_dim = static_cast<int>(l.dim);
  c.kernel.probe = learned ? Probe::kLearned : Probe::kNone;
  if (!learned) c.kernel.affine = Affine::kPlain;  // softmax merges one way
  return c;
}

}  // namespace parallax::capi
