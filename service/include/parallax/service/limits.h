// Per-request and per-server limits of the tuning service; all enforced before any work.
#pragma once

#include <cstdint>

namespace parallax::service {

struct ServiceLimits {
  int max_problems_per_request = 64;
  double max_budget_seconds = 24 * 3600;
  int max_queue = 16;                            // queued jobs over all devices
  int64_t max_message_bytes = 4 << 20;           // one gRPC message, either direction
  int64_t max_import_bytes = int64_t{1} << 30;   // whole ImportResults stream
  int export_chunk_bytes = 1 << 20;
  int max_list_page = 1000;
  int default_list_page = 100;
  int max_string_bytes = 256;                    // names, keys and filters
};

}  // namespace parallax::service
