#include "protobuf_log.h"

#include <mutex>
#include <string>

#include <google/protobuf/stubs/logging.h>
#include <spdlog/spdlog.h>

#include "absl/time/clock.h"

namespace parallax::service {
namespace {

namespace pb = google::protobuf;

struct State {
  std::mutex mu;
  LogThrottle throttle{10, absl::Minutes(1)};
  ProtobufLogCounts counts;
};

State& Global() {
  static State* state = new State();  // never destroyed: protobuf may log during exit
  return *state;
}

spdlog::level::level_enum LevelOf(pb::LogLevel level) {
  switch (level) {
    case pb::LOGLEVEL_INFO: return spdlog::level::info;
    case pb::LOGLEVEL_WARNING: return spdlog::level::warn;
    default: return spdlog::level::err;
  }
}

void Handler(pb::LogLevel level, const char* file, int line, const std::string& message) {
  State& s = Global();
  int64_t dropped = 0;
  {
    std::lock_guard lock(s.mu);
    // FATAL is protobuf's last word before it aborts: never dropped.
    if (level != pb::LOGLEVEL_FATAL && !s.throttle.Admit(absl::Now(), &dropped)) {
      ++s.counts.dropped;
      return;
    }
    ++s.counts.written;
  }
  if (dropped > 0)
    spdlog::log(LevelOf(level), "protobuf ({}:{}): {} ({} similar lines dropped before this one)", file, line,
                message, dropped);
  else
    spdlog::log(LevelOf(level), "protobuf ({}:{}): {}", file, line, message);
}

}  // namespace

bool LogThrottle::Admit(absl::Time now, int64_t* dropped) {
  if (now - window_start_ >= interval_) {
    window_start_ = now;
    in_window_ = 0;
  }
  if (in_window_ >= max_lines_) {
    ++dropped_;
    return false;
  }
  ++in_window_;
  *dropped = dropped_;
  dropped_ = 0;
  return true;
}

void InstallProtobufLogThrottle(int max_lines, absl::Duration interval) {
  static std::once_flag once;
  std::call_once(once, [&] {
    {
      State& s = Global();
      std::lock_guard lock(s.mu);
      s.throttle = LogThrottle(max_lines, interval);
    }
    pb::SetLogHandler(&Handler);
  });
}

ProtobufLogCounts GetProtobufLogCounts() {
  State& s = Global();
  std::lock_guard lock(s.mu);
  return s.counts;
}

}  // namespace parallax::service
