#include "parallax/codegen/variant.h"

#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "family_util.h"
#include "parallax/codegen/kernel_family.h"
#include "xxhash.h"

namespace parallax {
namespace {

using family::Bad;
using family::IsPow2;
using family::ParseTagged;

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
    if (!IsPow2(p.page_size) || p.page_size > 1024)
      return Bad("page_size", p.page_size, "must be a power of two in 1..1024 for paged KV");
  } else if (p.page_size != 0) {
    return Bad("page_size", p.page_size, "must be 0 for contiguous KV");
  }
  if (p.queries < 1 || p.queries > kMaxDecodeQueries)
    return Bad("queries", p.queries, absl::StrCat("must be in 1..", kMaxDecodeQueries, " (query tokens per sequence)"));
  if (p.queries > 1 && p.mode != Mode::kDecode)
    return Bad("queries", p.queries, "applies to decode only (prefill takes any query length at launch)");
  return absl::OkStatus();
}

// The families (other than f) that read a field, for "applies to decode only".
std::string UsedBy(unsigned field) {
  std::string names;
  for (const KernelFamily* f : AllFamilies())
    if (f->fields() & field) absl::StrAppend(&names, names.empty() ? "" : " and ", f->name());
  return names;
}

// Fields a family does not read must stay at zero, so its key prints all of the schedule.
absl::Status ValidateUnusedFields(const KernelFamily& f, const Schedule& s) {
  const auto unused = [&](unsigned field) { return (f.fields() & field) == 0; };
  const std::string must_be_0 = absl::StrCat("; must be 0 for ", f.name());
  if (unused(kFieldSplits) && s.splits != 0)
    return Bad("splits", s.splits, absl::StrCat("applies to ", UsedBy(kFieldSplits), " only", must_be_0));
  if (unused(kFieldFusedMerge) && s.fused_merge)
    return Bad("fused_merge", "true", absl::StrCat("applies to ", UsedBy(kFieldFusedMerge), " only"));
  if (unused(kFieldPersistent) && s.persistent)
    return Bad("persistent", "true", absl::StrCat("applies to ", UsedBy(kFieldPersistent), " only"));
  if (unused(kFieldPingPong) && s.pingpong)
    return Bad("pingpong", "true", absl::StrCat("applies to ", UsedBy(kFieldPingPong), " only"));
  if (unused(kFieldTestFault) && s.test_fault != Schedule::TestFault::kNone)
    return Bad("test_fault", "set", absl::StrCat("applies to ", UsedBy(kFieldTestFault), " only"));
  if (unused(kFieldDqReduce) && s.dq_reduce != Schedule::DqReduce::kAtomic)
    return Bad("dq_reduce", "set", absl::StrCat("applies to ", UsedBy(kFieldDqReduce), " only"));
  if (unused(kFieldHeadsPerCta) && s.heads_per_cta != 0)
    return Bad("heads_per_cta", s.heads_per_cta,
               absl::StrCat("applies to ", UsedBy(kFieldHeadsPerCta), " only", must_be_0));
  if (unused(kFieldBlockM) && s.block_m != 0)
    return Bad("block_m", s.block_m, absl::StrCat("applies to ", UsedBy(kFieldBlockM), " only", must_be_0));
  return absl::OkStatus();
}

// The shared fields; then the family's own.
absl::Status ValidateSchedule(const Problem& p, const Algorithm& a, const Schedule& s) {
  // Warp-specialized families (a producer warpgroup and consumers) use up to 16 warps; the
  // others keep to powers of two up to 8 (KernelFamily::Validate says which).
  if (s.warps < 1 || s.warps > 16) return Bad("warps", s.warps, "must be in 1..16");
  if (s.path != MathPath::kWgmma && (!IsPow2(s.warps) || s.warps > 8))
    return Bad("warps", s.warps, "must be 1, 2, 4 or 8");
  if (s.block_n < 16 || s.block_n > 256 || s.block_n % 16 != 0)
    return Bad("block_n", s.block_n, "must be a multiple of 16 in 16..256");
  const int kv_tile_bytes = 2 * s.block_n * p.head_dim * 2;
  if (s.stages * kv_tile_bytes > 227 * 1024)
    return Bad("stages", s.stages,
               absl::StrFormat("%d stages of K+V tiles (%d bytes each) exceed 227 KiB of shared memory",
                               s.stages, kv_tile_bytes));
  const KernelFamily* f = FindFamily(p.mode, s.path);
  if (f == nullptr)
    return Bad("path", ToString(s.path), absl::StrCat("no kernel family serves ", ToString(p.mode), " on this path"));
  if (s.stages < 1 || s.stages > f->MaxStages())
    return Bad("stages", s.stages, absl::StrCat("must be in 1..", f->MaxStages()));
  if (absl::Status st = ValidateUnusedFields(*f, s); !st.ok()) return st;
  return f->Validate(p, a, s);
}

std::string PrintKey(const Problem& p, const Algorithm& a, const Schedule& s) {
  return absl::StrCat(ProblemKey(p, a), ".", ToString(s.path), FindFamily(p.mode, s.path)->PrintSchedule(s));
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
      "-", p.window ? "win" : "nowin", p.queries > 1 ? absl::StrCat("-q", p.queries) : std::string(), ".",
      ToString(a.probe), "-", ToString(a.affine));
}

const char* ToString(Mode m) {
  switch (m) {
    case Mode::kDecode: return "decode";
    case Mode::kPrefill: return "prefill";
    case Mode::kBackward: return "bwd";
  }
  return "?";
}
const char* ToString(DType d) { return d == DType::kBF16 ? "bf16" : "fp16"; }
const char* ToString(Probe p) { return p == Probe::kNone ? "none" : "learned"; }
const char* ToString(Affine a) { return a == Affine::kPlain ? "plain" : "amplified"; }
const char* ToString(MathPath p) {
  switch (p) {
    case MathPath::kMma: return "mma";
    case MathPath::kFma: return "fma";
    case MathPath::kWgmma: return "wgmma";
  }
  return "?";
}

Schedule CanonicalSchedule(const Problem& p, const Algorithm& a, Schedule s) {
  const KernelFamily* family = FindFamily(p.mode, s.path);
  if (family == nullptr) return s;  // Create names the path
  const KernelFamily& f = *family;
  const auto unused = [&](unsigned field) { return (f.fields() & field) == 0; };
  if (unused(kFieldSplits)) s.splits = 0;
  if (unused(kFieldHeadsPerCta)) s.heads_per_cta = 0;
  if (unused(kFieldBlockM)) s.block_m = 0;
  if (unused(kFieldFusedMerge)) s.fused_merge = false;
  if (unused(kFieldPingPong)) s.pingpong = false;
  if (unused(kFieldPersistent)) s.persistent = false;
  if (unused(kFieldTestFault)) s.test_fault = Schedule::TestFault::kNone;
  if (unused(kFieldDqReduce)) s.dq_reduce = Schedule::DqReduce::kAtomic;
  return f.Canonical(p, a, s);
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
  if (pt.size() != 6 && pt.size() != 7)
    return KeyError(key, "problem part must be mode-dtype-dD-hHQxHKV-layout-window[-qN]");
  if (pt[0] == "decode") p->mode = Mode::kDecode;
  else if (pt[0] == "prefill") p->mode = Mode::kPrefill;
  else if (pt[0] == "bwd") p->mode = Mode::kBackward;
  else return KeyError(key, absl::StrCat("mode '", pt[0], "' is not decode, prefill or bwd"));
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
  if (pt.size() == 7 && (!ParseTagged(pt[6], "q", &p->queries) || p->queries < 2))
    return KeyError(key, "query tokens must look like q4 (decode, 2..16; one token has no suffix)");

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
  else if (st[0] == "wgmma") s.path = MathPath::kWgmma;
  else return KeyError(key, absl::StrCat("path '", st[0], "' is not mma, fma or wgmma"));
  st.erase(st.begin());
  const KernelFamily* f = FindFamily(p.mode, s.path);
  if (f == nullptr)
    return KeyError(key, absl::StrCat("no kernel family serves ", ToString(p.mode), " on path '", ToString(s.path), "'"));
  if (absl::Status e = f->ParseSchedule(st, &s); !e.ok()) return KeyError(key, e.message());
  absl::StatusOr<Variant> v = Create(p, a, s);
  if (!v.ok()) return KeyError(key, v.status().message());
  if (v->Key() != key) return KeyError(key, absl::StrCat("not canonical; did you mean '", v->Key(), "'?"));
  return v;
}

std::string Variant::HashHex() const { return absl::StrFormat("%016x", hash_); }

int Variant::smem_bytes() const { return FamilyOf(*this).SmemBytes(*this); }

}  // namespace parallax
