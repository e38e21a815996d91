// The result of measuring one candidate on one shape bucket, as the strategies, the worker
// protocol and the tuning database all see it.
#pragma once

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "parallax/cache/rows.h"

namespace parallax::search {

enum class Verdict {
  kOk,         // timed; the output matched the reference
  kFailed,     // the candidate could not run (CUDA error, fault, compile error)
  kWrong,      // ran but its output disagreed with the reference
  kTimeout,    // no answer within the watchdog's limit (the worker was killed)
  kPruned,     // dropped before timing (spills, registers); never stored as a measurement
  kCancelled,  // the tuner was stopped while it ran; never stored
};
const char* ToString(Verdict v);
absl::StatusOr<Verdict> ParseVerdict(absl::string_view text);
// The measurement status stored for a verdict; nullopt for kPruned / kCancelled.
std::optional<cache::MeasurementStatus> ToCacheStatus(Verdict v);
Verdict FromCacheStatus(cache::MeasurementStatus s);

struct Outcome {
  Verdict verdict = Verdict::kFailed;
  double median_us = 0, min_us = 0, max_us = 0;
  int reps = 0;                 // timed samples behind median/min/max
  std::optional<double> rel_error;  // worst verification error seen (relative Frobenius)
  std::string error;            // why it is not kOk
  bool cached = false;          // served from the database (resume), not measured now

  bool ok() const { return verdict == Verdict::kOk; }
  static Outcome Ok(double median_us, double min_us, double max_us, int reps);
  static Outcome Bad(Verdict v, std::string error);
};

}  // namespace parallax::search
