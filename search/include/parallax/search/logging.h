// The cache library logs through spdlog's default logger, which writes to stdout; commands
// whose stdout is data (JSON, tables, the worker protocol) move it to stderr first.
#pragma once

namespace parallax::search {

// Idempotent; process-wide.
void LogToStderr();

}  // namespace parallax::search
