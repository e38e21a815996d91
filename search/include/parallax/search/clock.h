// Time and the tuning budget. Strategies read time only through a Clock so that tests can
// run them on recorded measurements with a fake clock.
#pragma once

#include <atomic>
#include <limits>

namespace parallax::search {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual double NowSeconds() const = 0;  // monotonic
};

// std::chrono::steady_clock.
const Clock& SteadyClock();

// Moves only when told to (tests: a fake measurer advances it by each candidate's cost).
class FakeClock final : public Clock {
 public:
  double NowSeconds() const override { return now_; }
  void Advance(double seconds) { now_ += seconds; }

 private:
  double now_ = 0;
};

// A deadline on a clock plus an optional cancel flag (Ctrl-C). Copyable; Slice() narrows it.
class Budget {
 public:
  // seconds <= 0: unlimited.
  Budget(const Clock& clock, double seconds, const std::atomic<bool>* cancel = nullptr);

  bool Cancelled() const { return cancel_ != nullptr && cancel_->load(); }
  bool Exhausted() const { return Cancelled() || clock_->NowSeconds() >= deadline_; }
  bool unlimited() const { return deadline_ == kInf; }
  double Remaining() const;  // seconds; +inf when unlimited
  double Elapsed() const { return clock_->NowSeconds() - start_; }
  // The same budget ending no later than `seconds` from now.
  Budget Slice(double seconds) const;
  const Clock& clock() const { return *clock_; }

 private:
  static constexpr double kInf = std::numeric_limits<double>::infinity();
  const Clock* clock_;
  double start_ = 0;
  double deadline_ = kInf;
  const std::atomic<bool>* cancel_ = nullptr;
};

}  // namespace parallax::search
