// CPU tests of the C API's two window spellings (parallax.h, "Windows"): window = W and
// FlashAttention's window_size = (window_left, window_right). Every equivalent spelling must
// translate to the identical call (problem, algorithm, kernel parameters), and every
// refusal must name its field. Device pointers are fake (aligned, never dereferenced).
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "c_api_fixtures.h"
#include "c_api_internal.h"
#include "parallax/parallax.h"

namespace {

using namespace parallax::capi_fixtures;  // NOLINT(build/namespaces): the tests are written in them
using parallax::capi::ResolveWindow;

constexpr int32_t kUnset = PLX_WINDOW_SIZE_UNSET;
constexpr int32_t kInt32Max = std::numeric_limits<int32_t>::max();

// One spelling of a window: `window`, and window_size (kUnset, kUnset = not given).
struct Spelling {
  int32_t window, left, right;
  std::string Name() const { return absl::StrCat("window=", window, " window_size=(", left, ", ", right, ")"); }
};

template <typename Args>
Args Spell(Args a, const Spelling& s) {
  a.window = s.window;
  a.window_left = s.left;
  a.window_right = s.right;
  return a;
}

// Every spelling of window W (0 = none) the C API accepts.
std::vector<Spelling> SpellingsOf(int32_t w) {
  const int32_t left = w == 0 ? -1 : w - 1;
  std::vector<Spelling> s = {{w, kUnset, kUnset}, {0, left, 0}, {0, left, -1}};
  if (w > 0) {  // both given, agreeing
    s.push_back({w, left, 0});
    s.push_back({w, left, -1});
  }
  return s;
}

template <typename Call>
void ExpectSameCall(const Call& got, const Call& want, int32_t w, const std::string& what) {
  EXPECT_EQ(got.problem, want.problem) << what;
  EXPECT_EQ(got.problem.window, w > 0) << what;
  EXPECT_EQ(got.algorithm, want.algorithm) << what;
  EXPECT_EQ(got.params.window, w) << what;
  EXPECT_TRUE(SameParams(got.params, want.params)) << what;
  EXPECT_EQ(got.variant_key, want.variant_key) << what;
  if constexpr (std::is_same_v<Call, parallax::DecodeCall>) {
    EXPECT_EQ(got.num_splits, want.num_splits) << what;
  } else {
    EXPECT_EQ(got.total_q, want.total_q) << what;
    EXPECT_EQ(got.total_k, want.total_k) << what;
  }
}

constexpr int32_t kWindows[] = {0, 1, 7, 50, 64, 1000, kInt32Max};

// ---- the mapping ----------------------------------------------------------------------------

TEST(CApiWindow, InitLeavesWindowSizeUnset) {
  plx_decode_args d;
  std::memset(&d, 0x5a, sizeof(d));
  plx_decode_args_init(&d);
  EXPECT_EQ(d.window, 0);
  EXPECT_EQ(d.window_left, PLX_WINDOW_SIZE_UNSET);
  EXPECT_EQ(d.window_right, PLX_WINDOW_SIZE_UNSET);
  plx_prefill_args p;
  std::memset(&p, 0x5a, sizeof(p));
  plx_prefill_args_init(&p);
  EXPECT_EQ(p.window, 0);
  EXPECT_EQ(p.window_left, PLX_WINDOW_SIZE_UNSET);
  EXPECT_EQ(p.window_right, PLX_WINDOW_SIZE_UNSET);
  EXPECT_EQ(PLX_WINDOW_SIZE_UNSET, std::numeric_limits<int32_t>::min());
}

TEST(CApiWindow, ResolveMapsFlashAttentionsWindowSize) {
  auto w = [](int32_t window, int32_t left, int32_t right) -> int64_t {
    absl::StatusOr<int32_t> r = ResolveWindow(window, left, right);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : -1000;
  };
  EXPECT_EQ(w(0, kUnset, kUnset), 0);
  EXPECT_EQ(w(32, kUnset, kUnset), 32);
  EXPECT_EQ(w(0, -1, 0), 0);  // left -1: unlimited
  EXPECT_EQ(w(0, -1, -1), 0);
  EXPECT_EQ(w(0, 0, 0), 1);  // the diagonal alone
  EXPECT_EQ(w(0, 31, 0), 32);
  EXPECT_EQ(w(0, 31, -1), 32);
  EXPECT_EQ(w(32, 31, 0), 32);
  EXPECT_EQ(w(0, kInt32Max - 1, 0), kInt32Max);  // the widest W
  EXPECT_EQ(w(kInt32Max, kInt32Max - 1, -1), kInt32Max);
}

// Every spelling of every window in kWindows, on top of `base`, validates and translates to
// the call that `window` alone gives.
template <typename Args, typename Call>
void ExpectOneCallPerWindow(const Args& base, absl::StatusOr<Call> (*translate)(const Args&),
                            plx_status (*validate)(const Args*)) {
  for (int32_t w : kWindows) {
    absl::StatusOr<Call> want = translate(Spell(base, {w, kUnset, kUnset}));
    ASSERT_TRUE(want.ok()) << want.status();
    for (const Spelling& s : SpellingsOf(w)) {
      const Args a = Spell(base, s);
      EXPECT_EQ(validate(&a), PLX_OK) << s.Name() << ": " << plx_last_error();
      absl::StatusOr<Call> got = translate(a);
      ASSERT_TRUE(got.ok()) << s.Name() << ": " << got.status();
      ExpectSameCall(*got, *want, w, s.Name());
    }
  }
}

TEST(CApiWindow, DecodeSpellingsTranslateToOneCall) {
  for (const plx_decode_args& base : {ValidDecode(), ValidPagedDecode()})
    ExpectOneCallPerWindow(base, &parallax::capi::TranslateDecodeArgs, &plx_decode_validate);
}

TEST(CApiWindow, PrefillSpellingsTranslateToOneCall) {
  for (const plx_prefill_args& base : {ValidPrefill(), ValidPackedPrefill()})
    ExpectOneCallPerWindow(base, &parallax::capi::TranslatePrefillArgs, &plx_prefill_validate);
}

// The resolved window picks the kernel: an explicit key must agree with it, whichever spelling.
TEST(CApiWindow, ExplicitKeysFollowTheResolvedWindow) {
  const std::string key = DefaultKey(parallax::Mode::kPrefill, parallax::DType::kFP16, /*window=*/true);
  ASSERT_FALSE(key.empty());
  plx_prefill_args a = Spell(ValidPrefill(), {0, 15, 0});
  a.variant = key.c_str();
  EXPECT_EQ(plx_prefill_validate(&a), PLX_OK) << plx_last_error();
  a = Spell(ValidPrefill(), {0, -1, 0});  // no window: a "nowin" problem
  a.variant = key.c_str();
  ExpectPrefillError(a, PLX_ERROR_INVALID_ARGUMENT, {"variant: '", "-nowin"});
}

// ---- every refusal, through both entry points ---------------------------------------------

struct Refusal {
  Spelling spelling;
  plx_status status;
  std::vector<const char*> needles;
};

std::vector<Refusal> Refusals() {
  const plx_status invalid = PLX_ERROR_INVALID_ARGUMENT, unsupported = PLX_ERROR_UNSUPPORTED;
  return {
      {{0, -2, 0}, invalid, {"window_left=-2: must be >= -1"}},
      {{0, kUnset + 1, -1}, invalid, {"window_left=-2147483647: must be >= -1"}},
      {{0, kInt32Max, 0}, unsupported, {"window_left=2147483647", "2^31 keys", "-1 = unlimited"}},
      {{0, 15, 1}, unsupported, {"window_right=1: must be 0 or -1", "causal"}},
      {{0, 15, kInt32Max}, unsupported, {"window_right=2147483647: must be 0 or -1"}},
      {{0, 15, -2}, invalid, {"window_right=-2: must be 0 or -1"}},
      {{0, -1, 1}, unsupported, {"window_right=1"}},
      {{0, 15, kUnset}, invalid, {"window_right: unset while window_left=15 is given", "set both"}},
      {{0, kUnset, 0}, invalid, {"window_left: unset while window_right=0 is given", "set both"}},
      {{32, 15, 0}, invalid, {"window=32 and window_size (window_left=15, window_right=0) disagree", "window=16"}},
      {{32, 32, -1}, invalid, {"window=32 and window_size", "window=33 (window_left + 1)"}},
      {{32, -1, 0}, invalid, {"window=32 and window_size (window_left=-1, window_right=0) disagree",
                              "no window (window=0)"}},
      {{-1, 15, 0}, invalid, {"window=-1: must be >= 0"}},
      {{-1, kUnset, kUnset}, invalid, {"window=-1: must be >= 0"}},
  };
}

// Each of Refusals() on top of `base` fails validation with its status and messages, the
// message naming the entry point (`fn`) and then the window field.
template <typename Args>
void ExpectRefusals(const Args& base, plx_status (*validate)(const Args*), const std::string& fn) {
  const std::string prefix = fn + ": window";
  for (const Refusal& r : Refusals()) {
    SCOPED_TRACE(r.spelling.Name());
    ExpectError(validate, Spell(base, r.spelling), r.status, {prefix.c_str()});
    const std::string msg = plx_last_error();
    for (const char* n : r.needles) EXPECT_NE(msg.find(n), std::string::npos) << "'" << n << "' not in: " << msg;
  }
}

TEST(CApiWindow, DecodeRefusesEachBadSpelling) {
  ExpectRefusals(ValidDecode(), &plx_decode_validate, "plx_decode_validate");
  ExpectRefusals(ValidPagedDecode(), &plx_decode_validate, "plx_decode_validate");
}

TEST(CApiWindow, PrefillRefusesEachBadSpelling) {
  ExpectRefusals(ValidPrefill(), &plx_prefill_validate, "plx_prefill_validate");
  ExpectRefusals(ValidPackedPrefill(), &plx_prefill_validate, "plx_prefill_validate");
}

// Window errors, like every argument error, come before the missing context.
TEST(CApiWindow, LaunchesValidateTheWindowFirst) {
  const plx_decode_args d = Spell(ValidDecode(), {0, 15, 2});
  EXPECT_EQ(plx_decode(nullptr, &d, nullptr), PLX_ERROR_UNSUPPORTED);
  EXPECT_EQ(std::string(plx_last_error()).rfind("plx_decode: window_right=2", 0), 0u) << plx_last_error();
  const plx_prefill_args p = Spell(ValidPrefill(), {8, 15, 0});
  EXPECT_EQ(plx_prefill(nullptr, &p, nullptr), PLX_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(std::string(plx_last_error()).rfind("plx_prefill: window=8 and window_size", 0), 0u) << plx_last_error();
}

// A struct filled by hand without plx_*_args_init reads window_size (0, 0): one key. That is
// a valid FlashAttention window, so it cannot be refused; it must at least mean exactly that.
TEST(CApiWindow, ZeroFilledWindowSizeIsTheDiagonal) {
  plx_decode_args a = ValidDecode();
  a.window_left = a.window_right = 0;
  absl::StatusOr<parallax::DecodeCall> c = parallax::capi::TranslateDecodeArgs(a);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->params.window, 1);
}

}  // namespace
