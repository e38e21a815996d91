#include "parallax/search/clock.h"

#include <algorithm>
#include <chrono>

namespace parallax::search {
namespace {

class Steady final : public Clock {
 public:
  double NowSeconds() const override {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
  }
};

}  // namespace

const Clock& SteadyClock() {
  static const Steady clock;
  return clock;
}

Budget::Budget(const Clock& clock, double seconds, const std::atomic<bool>* cancel)
    : clock_(&clock), start_(clock.NowSeconds()), cancel_(cancel) {
  if (seconds > 0) deadline_ = start_ + seconds;
}

double Budget::Remaining() const {
  if (unlimited()) return kInf;
  return std::max(0.0, deadline_ - clock_->NowSeconds());
}

Budget Budget::Slice(double seconds) const {
  Budget b = *this;
  b.start_ = clock_->NowSeconds();
  if (seconds > 0) b.deadline_ = std::min(deadline_, b.start_ + seconds);
  return b;
}

}  // namespace parallax::search
