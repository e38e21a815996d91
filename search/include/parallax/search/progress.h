// Tuning progress on stderr: on a terminal one status line redrawn in place (a bar, the
// bucket, variants tried/planned, best so far, ETA) with notable events printed above it;
// otherwise (logs, CI) plain lines: each bucket's start and end, failures, and a status line
// at most every `interval_s`.
#pragma once

#include <cstdio>
#include <map>
#include <string>

#include "parallax/search/tuner.h"

namespace parallax::search {

class ProgressPrinter {
 public:
  ProgressPrinter(FILE* out, bool tty, double interval_s = 10);
  void operator()(const ProgressEvent& e);
  void Finish();  // ends the redrawn line

  // "mma-n64-w4-s2-splitauto-g2" from a full key: the problem part is the same everywhere.
  static std::string ShortKey(const std::string& key);
  static std::string Duration(double seconds);  // "3m12s"

 private:
  std::string StatusLine(const ProgressEvent& e) const;
  void Line(const std::string& text);

  FILE* out_;
  bool tty_;
  double interval_s_;
  double last_status_ = -1e9;
  bool drawn_ = false;
  int units_done_ = 0;
};

}  // namespace parallax::search
