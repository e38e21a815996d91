#include "parallax/codegen/variant.h"

#include <charconv>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "xxhash.h"

namespace parallax {
namespace {

absl::Status Bad(absl::string_view field, absl::string_view value, absl::string_view rule) {
  return absl::InvalidArgumentError(absl::StrCat(field, "=", value, ": ", rule));
}
absl::Status Bad(absl::string_view field, int value, absl::string_view rule) {
  return Bad(field, std::to_string(value), rule);
}

bool IsPow2(int x) { return x > 0 && (x & (x - 1)) == 0; }
int CeilDiv(int a, int b) { return (a + b - 1) / b; }

// Rough live-register estimate per thread for the mma path: O accumulators, score
// fragments and (when held) the q/r A fragments. Keeps the space away from spills.
int MmaRegisterEstimate(int mtiles, int head_dim, int keys) {
  const int o = mtiles * head_dim / 2;
  const int s = mtiles * keys / 2;
  const int a = (mtiles * head_dim / 4 <= 32) ? mtiles * head_dim / 4 : 0;
  return o + s + a;
}

absl::Status ValidateProblem(const Problem& p) {
  if (p.head_dim != 64 && p.head_dim != 128 && p.head_dim != 256)
    return Bad("head_dim", p.head_dim, "must be 64, 128 or 256");
  if (p.num_kv_heads < 1 || p.num_kv_heads > 256)
    return Bad("num_kv_heads", p.num_kv_heads, "must be in 1..256");
  if (p.num_q_heads < 1 || p.num_q_heads > 1024)
    return Bad("num_q_heads", p.num_q_heads, "must be in 1..1024");
  if (p.num_q_heads % p.num_kv_heads != 0)
    return Bad("num_q_heads", p.num_q_heads,
               absl::StrCat("must be a multiple of num_kv_heads=", p.num_kv_heads));
  if (p.group_size() > 64)
    return Bad("group_size", p.group_size(), "must be at most 64 (num_q_heads/num_kv_heads)");
  if (p.kv_layout == KvLayout::kPaged) {
    if (p.mode != Mode::kDecode) return Bad("kv_layout", "paged", "paged KV is for decode only");
    if (!IsPow2(p.page_size) || p.page_size > 1024)
      return Bad("page_size", p.page_size, "must be a power of two in 1..1024 for paged KV");
  } else if (p.page_size != 0) {
    return Bad("page_size", p.page_size, "must be 0 for contiguous KV");
  }
  return absl::OkStatus();
}

absl::Status ValidateSchedule(const Problem& p, const Algorithm& a, const Schedule& s) {
  const bool mma = s.path == MathPath::kMma;
  const int units_per_mtile = a.probe == Probe::kLearned ? 8 : 16;
  if (!IsPow2(s.warps) || s.warps > 8) return Bad("warps", s.warps, "must be 1, 2, 4 or 8");
  if (s.stages < 1 || s.stages > 4) return Bad("stages", s.stages, "must be in 1..4");
  if (s.block_n < 16 || s.block_n > 256 || s.block_n % 16 != 0)
    return Bad("block_n", s.block_n, "must be a multiple of 16 in 16..256");
  const int kv_tile_bytes = 2 * s.block_n * p.head_dim * 2;
  if (s.stages * kv_tile_bytes > 227 * 1024)
    return Bad("stages", s.stages,
               absl::StrFormat("%d stages of K+V tiles (%d bytes each) exceed 227 KiB of shared memory",
                               s.stages, kv_tile_bytes));
  if (p.mode == Mode::kDecode) {
    if (s.block_m != 0) return Bad("block_m", s.block_m, "applies to prefill only; must be 0 for decode");
    if (s.splits < 0 || s.splits > 256) return Bad("splits", s.splits, "must be in 0..256 (0 = auto)");
    const int g = p.group_size();
    if (s.heads_per_cta < 1 || s.heads_per_cta > 16 || g % s.heads_per_cta != 0)
      return Bad("heads_per_cta", s.heads_per_cta,
                 absl::StrCat("must divide the GQA group size ", g, " and be at most 16"));
    if (s.block_n % s.warps != 0)
      return Bad("block_n", s.block_n, absl::StrCat("must be a multiple of warps=", s.warps));
    const int kw = s.block_n / s.warps;
    const int quantum = mma ? 16 : 32;
    if (kw % quantum != 0)
      return Bad("block_n", s.block_n,
                 absl::StrFormat("must be a multiple of %d (%d keys per warp x %d warps) for the %s path",
                                 quantum * s.warps, quantum, s.warps, mma ? "mma" : "fma"));
    if (mma) {
      const int mtiles = CeilDiv(s.heads_per_cta, units_per_mtile);
      if (mtiles * p.head_dim / 2 > 128 || MmaRegisterEstimate(mtiles, p.head_dim, kw) > 200)
        return Bad("heads_per_cta", s.heads_per_cta,
                   absl::StrFormat("%d MMA row tiles x head_dim %d need too many accumulator registers; "
                                   "pack fewer heads per CTA", mtiles, p.head_dim));
    } else {
      const int rows = s.heads_per_cta * (a.probe == Probe::kLearned ? 2 : 1);
      if (rows * p.head_dim / 32 > 128)
        return Bad("heads_per_cta", s.heads_per_cta,
                   "too many accumulator registers for the fma path; pack fewer heads per CTA");
    }
  } else {
    if (s.splits != 0) return Bad("splits", s.splits, "applies to decode only; must be 0 for prefill");
    if (s.fused_merge) return Bad("fused_merge", "true", "applies to decode only");
    if (s.test_fault != Schedule::TestFault::kNone) return Bad("test_fault", "set", "applies to decode only");
    if (s.heads_per_cta != 0)
      return Bad("heads_per_cta", s.heads_per_cta, "applies to decode only; must be 0 for prefill");
    if (s.block_m < 8 || s.block_m > 256 || s.block_m % s.warps != 0)
      return Bad("block_m", s.block_m, absl::StrCat("must be in 8..256 and a multiple of warps=", s.warps));
    const int rows = s.block_m / s.warps;
    if (mma) {
      if (rows % units_per_mtile != 0)
        return Bad("block_m", s.block_m,
                   absl::StrFormat("must give each of %d warps a multiple of %d query rows for the mma path",
                                   s.warps, units_per_mtile));
      const int mtiles = rows / units_per_mtile;
      if (mtiles * p.head_dim / 2 > 128 || MmaRegisterEstimate(mtiles, p.head_dim, s.block_n) > 200)
        return Bad("block_m", s.block_m,
                   absl::StrFormat("%d MMA row tiles per warp with head_dim %d and block_n %d need too many "
                                   "registers", mtiles, p.head_dim, s.block_n));
    } else {
      if (s.block_n % 32 != 0)
        return Bad("block_n", s.block_n, "must be a multiple of 32 for the fma path");
      const int units = rows * (a.probe == Probe::kLearned ? 2 : 1);
      if (units * p.head_dim / 32 > 128)
        return Bad("block_m", s.block_m, "too many accumulator registers for the fma path; use fewer rows");
    }
  }
  return absl::OkStatus();
}

std::string PrintKey(const Problem& p, const Algorithm& a, const Schedule& s) {
  std::string key = absl::StrCat(ProblemKey(p, a), ".", ToString(s.path));
  if (p.mode == Mode::kPrefill) absl::StrAppend(&key, "-m", s.block_m);
  absl::StrAppend(&key, "-n", s.block_n, "-w", s.warps, "-s", s.stages);
  if (p.mode == Mode::kDecode) {
    absl::StrAppend(&key, "-split", s.splits == 0 ? std::string("auto") : std::to_string(s.splits),
                    "-g", s.heads_per_cta, s.fused_merge ? "-fused" : "",
                    s.test_fault == Schedule::TestFault::kIllegalAddress ? "-testfault"
                    : s.test_fault == Schedule::TestFault::kHang         ? "-testhang"
                                                                         : "");
  }
  return key;
}

// Parses "<prefix><int>" exactly (no sign, no leading zeros except "0").
bool ParseTagged(absl::string_view tok, absl::string_view prefix, int* out) {
  if (tok.size() <= prefix.size() || tok.substr(0, prefix.size()) != prefix) return false;
  absl::string_view num = tok.substr(prefix.size());
  if (num.size() > 1 && num[0] == '0') return false;
  auto [ptr, ec] = std::from_chars(num.data(), num.data() + num.size(), *out);
  return ec == std::errc() && ptr == num.data() + num.size();
}

absl::Status KeyError(absl::string_view key, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("bad variant key '", key, "': ", what));
}

}  // namespace

bool IsTestOnlyKey(absl::string_view key) {
  return absl::EndsWith(key, "-testfault") || absl::EndsWith(key, "-testhang");
}

std::string ProblemKey(const Problem& p, const Algorithm& a) {
  return absl::StrCat(
      ToString(p.mode), "-", ToString(p.dtype), "-d", p.head_dim, "-h", p.num_q_heads, "x",
      p.num_kv_heads, "-",
      p.kv_layout == KvLayout::kPaged ? absl::StrCat("paged", p.page_size) : std::string("contig"),
      "-", p.window ? "win" : "nowin", ".", ToString(a.probe), "-", ToString(a.affine));
}

const char* ToString(Mode m) { return m == Mode::kDecode ? "decode" : "prefill"; }
const char* ToString(DType d) { return d == DType::kBF16 ? "bf16" : "fp16"; }
const char* ToString(Probe p) { return p == Probe::kNone ? "none" : "learned"; }
const char* ToString(Affine a) { return a == Affine::kPlain ? "plain" : "amplified"; }
const char* ToString(MathPath p) { return p == MathPath::kMma ? "mma" : "fma"; }

Schedule CanonicalSchedule(const Problem& p, const Algorithm& a, Schedule s) {
  if (p.mode == Mode::kDecode) {
    s.block_m = 0;
    if (s.heads_per_cta == 0) s.heads_per_cta = std::min(p.group_size(), 16);
    while (s.heads_per_cta > 1 && p.group_size() % s.heads_per_cta != 0) --s.heads_per_cta;
  } else {
    s.splits = 0;
    s.heads_per_cta = 0;
    s.fused_merge = false;
    if (s.block_m == 0) s.block_m = s.warps * (a.probe == Probe::kLearned ? 8 : 16);
  }
  return s;
}

Variant::Variant(const Problem& p, const Algorithm& a, const Schedule& s)
    : problem_(p), algorithm_(a), schedule_(s), key_(PrintKey(p, a, s)),
      hash_(XXH3_64bits(key_.data(), key_.size())) {}

absl::StatusOr<Variant> Variant::Create(const Problem& p, const Algorithm& a, const Schedule& s) {
  if (absl::Status st = ValidateProblem(p); !st.ok()) return st;
  if (absl::Status st = ValidateSchedule(p, a, s); !st.ok()) return st;
  return Variant(p, a, s);
}

// The problem and algorithm parts of a key ("decode-bf16-d128-h32x8-contig-nowin" and
// "learned-plain"); key is only quoted in errors.
static absl::Status ParseProblemParts(absl::string_view key, absl::string_view problem_part,
                                      absl::string_view algorithm_part, Problem* p, Algorithm* a) {
  std::vector<absl::string_view> pt = absl::StrSplit(problem_part, '-');
  std::vector<absl::string_view> at = absl::StrSplit(algorithm_part, '-');
  if (pt.size() != 6)
    return KeyError(key, "problem part must be mode-dtype-dD-hHQxHKV-layout-window");
  if (pt[0] == "decode") p->mode = Mode::kDecode;
  else if (pt[0] == "prefill") p->mode = Mode::kPrefill;
  else return KeyError(key, absl::StrCat("mode '", pt[0], "' is not decode or prefill"));
  if (pt[1] == "bf16") p->dtype = DType::kBF16;
  else if (pt[1] == "fp16") p->dtype = DType::kFP16;
  else return KeyError(key, absl::StrCat("dtype '", pt[1], "' is not bf16 or fp16"));
  if (!ParseTagged(pt[2], "d", &p->head_dim)) return KeyError(key, "head dim must look like d128");
  {
    std::vector<absl::string_view> h = absl::StrSplit(pt[3], 'x');
    if (h.size() != 2 || !ParseTagged(h[0], "h", &p->num_q_heads) ||
        !ParseTagged(absl::StrCat("h", h[1]), "h", &p->num_kv_heads))
      return KeyError(key, "heads must look like h32x8 (query heads x kv heads)");
  }
  if (pt[4] == "contig") {
    p->kv_layout = KvLayout::kContiguous;
  } else if (ParseTagged(pt[4], "paged", &p->page_size)) {
    p->kv_layout = KvLayout::kPaged;
  } else {
    return KeyError(key, "kv layout must be contig or pagedN");
  }
  if (pt[5] == "win") p->window = true;
  else if (pt[5] == "nowin") p->window = false;
  else return KeyError(key, "window must be win or nowin");

  if (at.size() != 2) return KeyError(key, "algorithm part must be probe-affine");
  if (at[0] == "none") a->probe = Probe::kNone;
  else if (at[0] == "learned") a->probe = Probe::kLearned;
  else return KeyError(key, absl::StrCat("probe '", at[0], "' is not none or learned"));
  if (at[1] == "plain") a->affine = Affine::kPlain;
  else if (at[1] == "amplified") a->affine = Affine::kAmplified;
  else return KeyError(key, absl::StrCat("affine '", at[1], "' is not plain or amplified"));

  return absl::OkStatus();
}

absl::StatusOr<std::pair<Problem, Algorithm>> ParseProblemKey(std::string_view key_in) {
  const absl::string_view key(key_in.data(), key_in.size());
  std::vector<absl::string_view> parts = absl::StrSplit(key, '.');
  if (parts.size() != 2) return KeyError(key, "expected two '.'-separated parts: problem.algorithm");
  Problem p;
  Algorithm a;
  if (absl::Status e = ParseProblemParts(key, parts[0], parts[1], &p, &a); !e.ok()) return e;
  if (absl::Status e = ValidateProblem(p); !e.ok()) return KeyError(key, e.message());
  if (ProblemKey(p, a) != key)
    return KeyError(key, absl::StrCat("not canonical; did you mean '", ProblemKey(p, a), "'?"));
  return std::make_pair(p, a);
}

absl::StatusOr<Variant> Variant::Parse(std::string_view key) { return Parse(key, VariantParseOptions{}); }

absl::StatusOr<Variant> Variant::Parse(std::string_view key_in, const VariantParseOptions& o) {
  const absl::string_view key(key_in.data(), key_in.size());
  // Refused before anything else, whatever the mode: such a kernel faults or hangs on purpose.
  if (IsTestOnlyKey(key) && !o.allow_test_faults)
    return absl::InvalidArgumentError(absl::StrCat(
        "test-only variant '", key, "': -testfault / -testhang kernels fault or hang on purpose and are "
        "accepted only by the tuner's isolation check"));
  std::vector<absl::string_view> parts = absl::StrSplit(key, '.');
  if (parts.size() != 3)
    return KeyError(key, "expected three '.'-separated parts: problem.algorithm.schedule");
  std::vector<absl::string_view> st = absl::StrSplit(parts[2], '-');
  Problem p;
  Algorithm a;
  if (absl::Status e = ParseProblemParts(key, parts[0], parts[1], &p, &a); !e.ok()) return e;

  Schedule s;
  if (st.empty()) return KeyError(key, "empty schedule part");
  if (st[0] == "mma") s.path = MathPath::kMma;
  else if (st[0] == "fma") s.path = MathPath::kFma;
  else return KeyError(key, absl::StrCat("path '", st[0], "' is not mma or fma"));
  size_t i = 1;
  // Decode keys may end in "-fused" (split merge done by the last CTA of each group), then
  // in a test suffix (only reached with allow_test_faults, checked above).
  if (p.mode == Mode::kDecode && (st.back() == "testfault" || st.back() == "testhang")) {
    s.test_fault = st.back() == "testfault" ? Schedule::TestFault::kIllegalAddress : Schedule::TestFault::kHang;
    st.pop_back();
  }
  if (p.mode == Mode::kDecode && st.size() == 7 && st[6] == "fused") {
    s.fused_merge = true;
    st.pop_back();
  }
  const size_t want = p.mode == Mode::kDecode ? 6 : 5;
  if (st.size() != want)
    return KeyError(key, p.mode == Mode::kDecode ? "decode schedule must be path-nN-wN-sN-splitN-gN[-fused]"
                                                 : "prefill schedule must be path-mN-nN-wN-sN");
  if (p.mode == Mode::kPrefill && !ParseTagged(st[i++], "m", &s.block_m))
    return KeyError(key, "expected mN (query rows per CTA)");
  if (!ParseTagged(st[i++], "n", &s.block_n)) return KeyError(key, "expected nN (keys per tile)");
  if (!ParseTagged(st[i++], "w", &s.warps)) return KeyError(key, "expected wN (warps)");
  if (!ParseTagged(st[i++], "s", &s.stages)) return KeyError(key, "expected sN (stages)");
  if (p.mode == Mode::kDecode) {
    if (st[i] == "splitauto") {
      s.splits = 0;
    } else if (!ParseTagged(st[i], "split", &s.splits)) {  // "split0" parses, then "did you mean"
      return KeyError(key, "expected splitN or splitauto");
    }
    ++i;
    if (!ParseTagged(st[i++], "g", &s.heads_per_cta)) return KeyError(key, "expected gN (heads per CTA)");
  }
  absl::StatusOr<Variant> v = Create(p, a, s);
  if (!v.ok()) return KeyError(key, v.status().message());
  if (v->Key() != key) return KeyError(key, absl::StrCat("not canonical; did you mean '", v->Key(), "'?"));
  return v;
}

std::string Variant::HashHex() const { return absl::StrFormat("%016x", hash_); }

int Variant::units_per_warp() const {
  if (problem_.mode == Mode::kDecode) return schedule_.heads_per_cta;
  return schedule_.block_m / schedule_.warps;
}
int Variant::mtiles_per_warp() const { return CeilDiv(units_per_warp(), units_per_mtile()); }
int Variant::keys_per_warp() const {
  return problem_.mode == Mode::kDecode ? schedule_.block_n / schedule_.warps : schedule_.block_n;
}
int Variant::ctas_per_group() const {
  return problem_.mode == Mode::kDecode ? problem_.group_size() / schedule_.heads_per_cta : 1;
}
int Variant::smem_ring_offset() const {
  const bool decode = problem_.mode == Mode::kDecode;
  const int d = problem_.head_dim;
  const int copies = decode ? 1 : schedule_.warps;  // decode warps share the q/r rows
  int bytes;
  if (schedule_.path == MathPath::kMma) {
    bytes = copies * mtiles_per_warp() * 16 * d * 2;  // stacked [q; r] A tiles, 16-bit
  } else {
    const int rows = units_per_warp() * (algorithm_.probe == Probe::kLearned ? 2 : 1);
    const int scratch_copies = schedule_.warps;       // p1/p2 exchange, one per warp
    bytes = copies * rows * d * 4 + scratch_copies * rows * 32 * 4;
  }
  return (bytes + 127) / 128 * 128;
}

int Variant::smem_bytes() const {
  const int d = problem_.head_dim;
  const int kv_ring = schedule_.stages * 2 * schedule_.block_n * d * 2;
  int merge = 0;  // decode: the cross-warp merge reuses the K/V ring after the main loop
  if (problem_.mode == Mode::kDecode) merge = schedule_.warps * units_per_warp() * (2 * d + 4) * 4;
  return smem_ring_offset() + std::max(kv_ring, merge);
}

}  // namespace parallax
