#include "parallax/search/tune_args.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "parallax/cache/paths.h"

namespace parallax::search {

std::string DefaultDbPath() { return cache::DefaultDbPath(); }

absl::StatusOr<double> ParseDuration(absl::string_view text) {
  const std::string t(absl::StripAsciiWhitespace(text));
  auto bad = [&t](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(
        "'", t, "': ", why, "; expected a duration such as 90 (seconds), 30s, 5m, 1h or 1h30m"));
  };
  if (t.empty()) return bad("empty");
  double total = 0;
  size_t i = 0;
  bool last_unitless = false;
  while (i < t.size()) {
    if (last_unitless) return bad("a number without a unit can only stand alone");
    size_t j = i;
    while (j < t.size() && (absl::ascii_isdigit(static_cast<unsigned char>(t[j])) || t[j] == '.')) ++j;
    double value = 0;
    if (j == i || !absl::SimpleAtod(t.substr(i, j - i), &value) || !std::isfinite(value) || value < 0)
      return bad("not a non-negative number");
    size_t k = j;
    while (k < t.size() && absl::ascii_isalpha(static_cast<unsigned char>(t[k]))) ++k;
    const std::string unit = absl::AsciiStrToLower(t.substr(j, k - j));
    double scale = 0;
    if (unit.empty()) {
      scale = 1;
      last_unitless = true;
      if (i > 0) return bad("a number without a unit can only stand alone");
    } else if (unit == "s" || unit == "sec" || unit == "secs") {
      scale = 1;
    } else if (unit == "m" || unit == "min" || unit == "mins") {
      scale = 60;
    } else if (unit == "h" || unit == "hr" || unit == "hrs") {
      scale = 3600;
    } else {
      return bad(absl::StrCat("unknown unit '", unit, "'"));
    }
    total += value * scale;
    i = k;
  }
  return total;
}

std::string FormatDuration(double seconds) {
  if (seconds <= 0) return "0";
  const int64_t s = static_cast<int64_t>(std::llround(seconds));
  if (std::fabs(seconds - static_cast<double>(s)) > 1e-9) return absl::StrCat(seconds, "s");
  std::string out;
  if (s >= 3600) absl::StrAppend(&out, s / 3600, "h");
  if (s % 3600 >= 60) absl::StrAppend(&out, (s % 3600) / 60, "m");
  if (s % 60 != 0) absl::StrAppend(&out, s % 60, "s");
  return out;
}

absl::StatusOr<std::vector<int>> PresetShape(const std::string& name) {
  if (name == "qwen3-0.6b") return std::vector<int>{16, 8, 128};
  if (name == "qwen3-1.7b") return std::vector<int>{16, 8, 128};
  if (name == "llama3-8b") return std::vector<int>{32, 8, 128};
  return absl::InvalidArgumentError(
      absl::StrCat("--preset ", name, ": expected qwen3-0.6b, qwen3-1.7b or llama3-8b"));
}

absl::StatusOr<Mode> ParseModeFlag(absl::string_view text) {
  for (Mode m : {Mode::kDecode, Mode::kPrefill, Mode::kBackward})
    if (text == ToString(m)) return m;
  return absl::InvalidArgumentError(absl::StrCat("--mode ", text, ": expected decode, prefill or bwd"));
}

absl::StatusOr<TuneRequest> MakeTuneRequest(const TuneArgs& a) {
  int hq = a.q_heads, hkv = a.kv_heads, d = a.head_dim;
  if (!a.preset.empty()) {
    absl::StatusOr<std::vector<int>> p = PresetShape(a.preset);
    if (!p.ok()) return p.status();
    if (hq == 0) hq = (*p)[0];
    if (hkv == 0) hkv = (*p)[1];
    if (d == 0) d = (*p)[2];
  }
  if (hq == 0 || hkv == 0 || d == 0)
    return absl::InvalidArgumentError("give --preset, or all of --q-heads, --kv-heads and --head-dim");
  TuneRequest r;
  Problem& p = r.problem;
  absl::StatusOr<Mode> mode = ParseModeFlag(a.mode);
  if (!mode.ok()) return mode.status();
  p.mode = *mode;
  if (p.mode == Mode::kDecode && !a.q_len.empty()) {  // multi-token decode: one query count per problem
    if (a.q_len.size() != 1 || a.q_len[0] < 1 || a.q_len[0] > kMaxDecodeQueries)
      return absl::InvalidArgumentError(absl::StrCat(
          "--q-len: decode takes one value, the query tokens per sequence (1..", kMaxDecodeQueries,
          "; multi-token decode above 1)"));
    p.queries = a.q_len[0];
  }
  if (a.dtype != "bf16" && a.dtype != "fp16")
    return absl::InvalidArgumentError(absl::StrCat("--dtype ", a.dtype, ": expected bf16 or fp16"));
  p.dtype = a.dtype == "fp16" ? DType::kFP16 : DType::kBF16;
  p.num_q_heads = hq;
  p.num_kv_heads = hkv;
  p.head_dim = d;
  if (a.paged < 0) return absl::InvalidArgumentError("--paged must be >= 0");
  if (a.paged > 0 && p.mode == Mode::kPrefill)
    return absl::InvalidArgumentError("--paged: prefill takes contiguous K/V only");
  if (a.paged > 0 && p.mode == Mode::kBackward)
    return absl::InvalidArgumentError("--paged: bwd reads contiguous K/V only");
  if (a.paged > 0) {
    p.kv_layout = KvLayout::kPaged;
    p.page_size = a.paged;
  }
  r.algorithm.probe = a.probe == "none" ? Probe::kNone : Probe::kLearned;
  r.algorithm.affine = a.affine == "amplified" ? Affine::kAmplified : Affine::kPlain;
  if (absl::Status s = ValidateProblemOnly(p, r.algorithm); !s.ok())
    return absl::InvalidArgumentError(absl::StrCat("bad problem: ", s.message()));
  if (p.mode != Mode::kDecode)
    for (int q : a.q_len)
      if (q < 1) return absl::InvalidArgumentError(absl::StrCat("--q-len ", q, ": values must be >= 1"));
  auto add = [&r](const ShapeBucket& bucket) {
    if (std::find(r.buckets.begin(), r.buckets.end(), bucket) == r.buckets.end()) r.buckets.push_back(bucket);
  };
  for (int b : a.batch)
    for (int l : a.seqlen) {
      if (b < 1 || l < 1) return absl::InvalidArgumentError("--batch and --seqlen values must be >= 1");
      if (p.mode == Mode::kDecode) {
        add(BucketFor(b, l));
      } else if (a.q_len.empty()) {
        add(PrefillBucketFor(b, l, l));
      } else {
        for (int q : a.q_len)
          if (q <= l) add(PrefillBucketFor(b, q, l));
      }
    }
  if (r.buckets.empty())
    return absl::InvalidArgumentError(p.mode == Mode::kDecode ? "no --batch x --seqlen buckets"
                                                              : "no --batch x --q-len x --seqlen buckets "
                                                                "(every --q-len is above every --seqlen)");
  return r;
}

}  // namespace parallax::search
