// `db show --plot FILE.svg`: tuned vs default time per bucket as a plain SVG file (no
// plotting library: the format is a few XML elements). One panel per (device, problem), the
// buckets in numeric order, two bars each on a log time axis, the speedup above.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace parallax::cli {

struct PlotBar {
  std::string bucket;
  double tuned_us = 0;
  std::optional<double> default_us;  // unknown when the default was never measured there
  std::string variant;               // the tuned schedule, shown as the bar's tooltip
};

struct PlotPanel {
  std::string title;     // the problem key
  std::string subtitle;  // the device
  std::vector<PlotBar> bars;
};

std::string TunedVsDefaultSvg(const std::vector<PlotPanel>& panels, const std::string& title);

// &, <, >, " and ' as XML entities.
std::string XmlEscape(const std::string& s);

}  // namespace parallax::cli
