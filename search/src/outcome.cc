#include "parallax/search/outcome.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace parallax::search {

const char* ToString(Verdict v) {
  switch (v) {
    case Verdict::kOk: return "ok";
    case Verdict::kFailed: return "failed";
    case Verdict::kWrong: return "wrong";
    case Verdict::kTimeout: return "timeout";
    case Verdict::kPruned: return "pruned";
    case Verdict::kCancelled: return "cancelled";
  }
  return "?";
}

absl::StatusOr<Verdict> ParseVerdict(absl::string_view text) {
  for (Verdict v : {Verdict::kOk, Verdict::kFailed, Verdict::kWrong, Verdict::kTimeout, Verdict::kPruned,
                    Verdict::kCancelled})
    if (text == ToString(v)) return v;
  return absl::InvalidArgumentError(absl::StrCat("unknown verdict '", text, "'"));
}

std::optional<cache::MeasurementStatus> ToCacheStatus(Verdict v) {
  switch (v) {
    case Verdict::kOk: return cache::MeasurementStatus::kOk;
    case Verdict::kFailed: return cache::MeasurementStatus::kFailed;
    case Verdict::kWrong: return cache::MeasurementStatus::kWrong;
    case Verdict::kTimeout: return cache::MeasurementStatus::kTimeout;
    case Verdict::kPruned:
    case Verdict::kCancelled: return std::nullopt;
  }
  return std::nullopt;
}

Verdict FromCacheStatus(cache::MeasurementStatus s) {
  switch (s) {
    case cache::MeasurementStatus::kOk: return Verdict::kOk;
    case cache::MeasurementStatus::kFailed: return Verdict::kFailed;
    case cache::MeasurementStatus::kWrong: return Verdict::kWrong;
    case cache::MeasurementStatus::kTimeout: return Verdict::kTimeout;
  }
  return Verdict::kFailed;
}

Outcome Outcome::Ok(double median_us, double min_us, double max_us, int reps) {
  Outcome o;
  o.verdict = Verdict::kOk;
  o.median_us = median_us;
  o.min_us = min_us;
  o.max_us = max_us;
  o.reps = reps;
  return o;
}

Outcome Outcome::Bad(Verdict v, std::string error) {
  Outcome o;
  o.verdict = v;
  o.error = std::move(error);
  return o;
}

}  // namespace parallax::search
