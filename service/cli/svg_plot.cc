#include "svg_plot.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace parallax::cli {
namespace {

constexpr double kHeader = 56, kLeft = 80, kRight = 20, kPanelTop = 56, kPlotHeight = 220, kLabelBand = 90;
constexpr double kBarWidth = 16, kBarGap = 4, kGroupGap = 18;
constexpr const char* kTunedColor = "#1f77b4";
constexpr const char* kDefaultColor = "#b0b0b0";

std::string Us(double us) {
  if (us >= 1000) return absl::StrFormat("%.3g ms", us / 1000);
  return absl::StrFormat("%.3g us", us);
}

}  // namespace

std::string XmlEscape(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string TunedVsDefaultSvg(const std::vector<PlotPanel>& panels, const std::string& title) {
  size_t most = 1;
  for (const PlotPanel& p : panels) most = std::max(most, p.bars.size());
  const double group = 2 * kBarWidth + kBarGap + kGroupGap;
  size_t longest = title.size();  // ~6.5 px a character at 11-13 px: no text runs off the page
  for (const PlotPanel& p : panels) longest = std::max({longest, p.title.size(), p.subtitle.size()});
  const double width = std::max({480.0, kLeft + kRight + group * static_cast<double>(most),
                                 kLeft + kRight + 7.0 * static_cast<double>(longest)});
  const double panel_height = kPanelTop + kPlotHeight + kLabelBand;
  const double height = kHeader + panel_height * static_cast<double>(std::max<size_t>(panels.size(), 1));
  std::string svg = absl::StrFormat(
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" "
      "font-family=\"sans-serif\" font-size=\"11\">\n"
      "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
      "<text x=\"%.0f\" y=\"22\" font-size=\"15\" font-weight=\"bold\">%s</text>\n"
      "<rect x=\"%.0f\" y=\"32\" width=\"12\" height=\"12\" fill=\"%s\"/><text x=\"%.0f\" y=\"42\">tuned</text>\n"
      "<rect x=\"%.0f\" y=\"32\" width=\"12\" height=\"12\" fill=\"%s\"/><text x=\"%.0f\" y=\"42\">default "
      "(the untuned variant, measured in the same run)</text>\n",
      width, height, width, height, kLeft, XmlEscape(title), kLeft, kTunedColor, kLeft + 16, kLeft + 70,
      kDefaultColor, kLeft + 86);
  for (size_t pi = 0; pi < panels.size(); ++pi) {
    const PlotPanel& p = panels[pi];
    const double top = kHeader + panel_height * static_cast<double>(pi);
    const double y0 = top + kPanelTop, y1 = y0 + kPlotHeight;  // plot area, y1 = baseline
    absl::StrAppendFormat(&svg, "<g class=\"panel\">\n<text x=\"%.0f\" y=\"%.0f\" font-size=\"13\">%s</text>\n",
                          kLeft, top + 20, XmlEscape(p.title));
    absl::StrAppendFormat(&svg, "<text x=\"%.0f\" y=\"%.0f\" fill=\"#555\">%s</text>\n", kLeft, top + 36,
                          XmlEscape(p.subtitle));
    // Log axis over whole decades around every time shown.
    double lo = 1e300, hi = 0;
    for (const PlotBar& b : p.bars)
      for (double v : {b.tuned_us, b.default_us.value_or(b.tuned_us)})
        if (v > 0) lo = std::min(lo, v), hi = std::max(hi, v);
    if (hi <= 0) lo = 1, hi = 10;
    const double d0 = std::floor(std::log10(lo)), d1 = std::max(d0 + 1, std::ceil(std::log10(hi)));
    auto y_of = [&](double us) {
      const double f = (std::log10(std::max(us, 1e-9)) - d0) / (d1 - d0);
      return y1 - std::clamp(f, 0.0, 1.0) * kPlotHeight;
    };
    for (double d = d0; d <= d1; d += 1) {
      const double y = y_of(std::pow(10.0, d));
      absl::StrAppendFormat(&svg,
                            "<line x1=\"%.0f\" y1=\"%.1f\" x2=\"%.0f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                            "<text x=\"%.0f\" y=\"%.1f\" text-anchor=\"end\" fill=\"#555\">%s</text>\n",
                            kLeft, y, width - kRight, y, kLeft - 6, y + 4, Us(std::pow(10.0, d)));
    }
    absl::StrAppendFormat(&svg, "<line x1=\"%.0f\" y1=\"%.1f\" x2=\"%.0f\" y2=\"%.1f\" stroke=\"#333\"/>\n", kLeft,
                          y1, width - kRight, y1);
    for (size_t i = 0; i < p.bars.size(); ++i) {
      const PlotBar& b = p.bars[i];
      const double x = kLeft + kGroupGap / 2 + group * static_cast<double>(i);
      const double ty = y_of(b.tuned_us);
      absl::StrAppendFormat(&svg,
                            "<rect class=\"tuned\" x=\"%.1f\" y=\"%.1f\" width=\"%.0f\" height=\"%.1f\" fill=\"%s\">"
                            "<title>%s tuned %s: %s</title></rect>\n",
                            x, ty, kBarWidth, y1 - ty, kTunedColor, XmlEscape(b.bucket), Us(b.tuned_us),
                            XmlEscape(b.variant));
      if (b.default_us) {
        const double dy = y_of(*b.default_us);
        absl::StrAppendFormat(&svg,
                              "<rect class=\"default\" x=\"%.1f\" y=\"%.1f\" width=\"%.0f\" height=\"%.1f\" "
                              "fill=\"%s\"><title>%s default %s</title></rect>\n",
                              x + kBarWidth + kBarGap, dy, kBarWidth, y1 - dy, kDefaultColor, XmlEscape(b.bucket),
                              Us(*b.default_us));
        if (b.tuned_us > 0)
          absl::StrAppendFormat(&svg, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"9\">%.2fx</text>\n",
                                x + kBarWidth + kBarGap / 2, std::min(ty, dy) - 4, *b.default_us / b.tuned_us);
      }
      const double lx = x + kBarWidth + kBarGap / 2, ly = y1 + 12;
      absl::StrAppendFormat(&svg,
                            "<text class=\"bucket\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" "
                            "transform=\"rotate(-45 %.1f %.1f)\">%s</text>\n",
                            lx, ly, lx, ly, XmlEscape(b.bucket));
    }
    svg += "</g>\n";
  }
  svg += "</svg>\n";
  return svg;
}

}  // namespace parallax::cli
