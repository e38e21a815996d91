// The C API's two spellings of a sliding window (parallax.h, "Windows"): ours, window = W,
// and FlashAttention's window_size = (left, right), reduced to the one W the kernels take.
#include <cstdint>
#include <limits>

#include "absl/strings/str_cat.h"
#include "c_api_internal.h"

namespace parallax::capi {
namespace {

// FlashAttention's spelling alone, both fields given.
absl::StatusOr<int32_t> FromWindowSize(int32_t left, int32_t right) {
  if (left < -1)
    return Invalid("window_left=", left, ": must be >= -1 (-1 = unlimited, else the window spans left + 1 keys)");
  // W = left + 1 must fit the kernels' int32 window.
  if (left == std::numeric_limits<int32_t>::max())
    return Unsupported("window_left=", left, ": a window of 2^31 keys (left + 1) is not supported; -1 = unlimited");
  // Past the diagonal nothing is visible: prefill is causal and decode's query is the newest
  // position, so only FlashAttention's causal right edge (0, or -1 which reads the same) fits.
  if (right > 0)
    return Unsupported("window_right=", right, ": must be 0 or -1; the kernels are causal (no query sees a later ",
                       "key), as FlashAttention's causal=True forces 0");
  if (right < -1) return Invalid("window_right=", right, ": must be 0 or -1 (the kernels are causal)");
  return left == -1 ? 0 : left + 1;
}

}  // namespace

absl::StatusOr<int32_t> ResolveWindow(int32_t window, int32_t left, int32_t right) {
  if (window < 0) return Invalid("window=", window, ": must be >= 0 (0 = no window)");
  const bool has_left = left != PLX_WINDOW_SIZE_UNSET, has_right = right != PLX_WINDOW_SIZE_UNSET;
  if (!has_left && !has_right) return window;
  if (!has_left) return Invalid("window_left: unset while window_right=", right, " is given; set both or neither");
  if (!has_right) return Invalid("window_right: unset while window_left=", left, " is given; set both or neither");
  absl::StatusOr<int32_t> w = FromWindowSize(left, right);
  if (!w.ok()) return w.status();
  if (window != 0 && window != *w)
    return Invalid("window=", window, " and window_size (window_left=", left, ", window_right=", right,
                   ") disagree: that window_size is ",
                   *w == 0 ? "no window (window=0)" : absl::StrCat("window=", *w, " (window_left + 1)"));
  return *w;
}

}  // namespace parallax::capi
