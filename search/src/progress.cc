#include "parallax/search/progress.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace parallax::search {

ProgressPrinter::ProgressPrinter(FILE* out, bool tty, double interval_s)
    : out_(out), tty_(tty), interval_s_(interval_s) {}

std::string ProgressPrinter::ShortKey(const std::string& key) {
  const size_t a = key.find('.');
  const size_t b = a == std::string::npos ? a : key.find('.', a + 1);
  return b == std::string::npos ? key : key.substr(b + 1);
}

std::string ProgressPrinter::Duration(double s) {
  if (s < 0 || !std::isfinite(s)) return "?";
  const long t = std::lround(s);
  if (t >= 3600) return absl::StrFormat("%dh%02dm", t / 3600, t / 60 % 60);
  if (t >= 60) return absl::StrFormat("%dm%02ds", t / 60, t % 60);
  return absl::StrFormat("%ds", t);
}

std::string ProgressPrinter::StatusLine(const ProgressEvent& e) const {
  const int planned = std::max(e.planned, e.tried);
  const double frac = e.units > 0 ? (units_done_ + (planned > 0 ? double(e.tried) / planned : 0)) / e.units : 0;
  std::string s;
  if (tty_) {
    constexpr int kWidth = 20;
    const int filled = std::clamp(static_cast<int>(frac * kWidth), 0, kWidth);
    s = absl::StrCat("[", std::string(filled, '#'), std::string(kWidth - filled, '.'), "] ");
  }
  absl::StrAppendFormat(&s, "%3.0f%% gpu%d %s (%d/%d) variants %d/%d", 100 * std::min(frac, 1.0), e.device,
                        e.bucket, e.unit, e.units, e.tried, planned);
  if (!e.best_key.empty()) absl::StrAppendFormat(&s, " best %.2f us %s", e.best_us, ShortKey(e.best_key));
  absl::StrAppend(&s, " elapsed ", Duration(e.elapsed_s), " ETA ", Duration(e.eta_s));
  return s;
}

void ProgressPrinter::Line(const std::string& text) {
  if (tty_ && drawn_) std::fputs("\r\033[K", out_);
  std::fputs(text.c_str(), out_);
  std::fputc('\n', out_);
  drawn_ = false;
}

void ProgressPrinter::operator()(const ProgressEvent& e) {
  switch (e.kind) {
    case ProgressEvent::Kind::kUnitStart:
      Line(absl::StrFormat("tune: gpu%d %s (%d/%d): %d candidates, ~%d measurements planned", e.device, e.bucket,
                           e.unit, e.units, e.candidates, e.planned));
      break;
    case ProgressEvent::Kind::kUnitDone:
      ++units_done_;
      Line(e.best_key.empty()
               ? absl::StrFormat("tune: gpu%d %s done: nothing ran ok%s%s", e.device, e.bucket,
                                 e.message.empty() ? "" : ": ", e.message)
               : absl::StrFormat("tune: gpu%d %s done: best %.2f us %s%s%s", e.device, e.bucket, e.best_us,
                                 ShortKey(e.best_key), e.message.empty() ? "" : "; ", e.message));
      break;
    case ProgressEvent::Kind::kMessage:
      Line(absl::StrCat("tune: ", e.message));
      break;
    case ProgressEvent::Kind::kMeasured: {
      const Verdict v = e.outcome.verdict;
      if (!e.outcome.cached && (v == Verdict::kFailed || v == Verdict::kWrong || v == Verdict::kTimeout))
        Line(absl::StrFormat("tune: gpu%d %s: %s %s: %s", e.device, e.bucket, ToString(v), ShortKey(e.key),
                             e.outcome.error.substr(0, 300)));
      if (tty_) {
        std::fputs(absl::StrCat("\r\033[K", StatusLine(e)).c_str(), out_);
        drawn_ = true;
      } else if (e.elapsed_s - last_status_ >= interval_s_) {
        last_status_ = e.elapsed_s;
        Line(absl::StrCat("tune: ", StatusLine(e)));
      }
      break;
    }
  }
  std::fflush(out_);
}

void ProgressPrinter::Finish() {
  if (tty_ && drawn_) std::fputs("\n", out_);
  drawn_ = false;
  std::fflush(out_);
}

}  // namespace parallax::search
