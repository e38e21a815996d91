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
  // ImportResults: uploads at once (a further one gets RESOURCE_EXHAUSTED at its first
  // chunk), and the temporary disk they may fill together, reserved as each declares its
  // total_bytes and released when its stream ends, however it ends.
  int max_concurrent_imports = 2;
  int64_t max_import_temp_bytes = int64_t{2} << 30;
  // An upload from its start through the end of its merge (DEADLINE_EXCEEDED); 0: none.
  int64_t import_time_limit_ms = 30 * 60 * 1000;
  // How long an export or import waits on its client (the next chunk, or room to send
  // one) before the stream is ended with DEADLINE_EXCEEDED; 0: forever.
  int64_t import_idle_limit_ms = 60 * 1000;
};

}  // namespace parallax::service
