// protobuf writes an ERROR line for every message it refuses to parse because a string field
// is not UTF-8 ("String field '...' contains invalid UTF-8 data ..."), so any client that can
// reach the server could fill its log. The handler installed here passes at most `max_lines`
// protobuf lines per interval on to spdlog and counts the rest; the next line that passes
// says how many were dropped.
#pragma once

#include <cstdint>

#include "absl/time/time.h"

namespace parallax::service {

class LogThrottle {
 public:
  LogThrottle(int max_lines, absl::Duration interval) : max_lines_(max_lines), interval_(interval) {}
  // True: write this line; `*dropped` is how many lines were dropped since the last written one.
  bool Admit(absl::Time now, int64_t* dropped);

 private:
  int max_lines_;
  absl::Duration interval_;
  absl::Time window_start_ = absl::InfinitePast();
  int in_window_ = 0;
  int64_t dropped_ = 0;
};

// Process-wide (protobuf has one handler); the first call installs, later ones do nothing.
// Call it before the server's threads start (protobuf's SetLogHandler is not thread-safe).
void InstallProtobufLogThrottle(int max_lines = 10, absl::Duration interval = absl::Minutes(1));

struct ProtobufLogCounts {
  int64_t written = 0;
  int64_t dropped = 0;
};
ProtobufLogCounts GetProtobufLogCounts();

}  // namespace parallax::service
