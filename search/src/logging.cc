#include "parallax/search/logging.h"

#include <mutex>

#include "spdlog/sinks/stdout_color_sinks.h"
#include "spdlog/spdlog.h"

namespace parallax::search {

void LogToStderr() {
  static std::once_flag once;
  std::call_once(once, [] { spdlog::set_default_logger(spdlog::stderr_color_mt("parallax-stderr")); });
}

}  // namespace parallax::search
