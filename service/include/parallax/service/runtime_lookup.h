// Optional: lets a Runtime ask a tuning service for configs its local database lacks. The
// runtime core has no gRPC dependency; an application that wants this links
// parallax_service_lookup (or Parallax::service_lookup) and attaches it once.
//
// Order per decode plan: the runtime's own lookup (its tuning DB) first; on a miss,
// GetBestConfig with the client's short lookup deadline (250 ms by default). Answers are
// kept for the runtime's life, so each (problem, bucket) is asked once; a miss, a "default"
// answer or any error (server down, deadline) is remembered for retry_after and the runtime
// uses its built-in default meanwhile. It never fails a launch. A local row the runtime
// cannot use (TunedKeyFilter) does not stop the service from being asked.
#pragma once

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "parallax/runtime/runtime.h"
#include "parallax/service/client.h"

namespace parallax::service {

struct ServiceLookupOptions {
  ClientOptions client;
  absl::Duration retry_after = absl::Seconds(30);
};

// The service half alone, for `device` (tests use it without a GPU). Connects lazily: no
// RPC happens here. InvalidArgument for bad client options.
absl::StatusOr<Runtime::TunedLookup> MakeServiceLookup(const DeviceInfo& device, const ServiceLookupOptions& options);

// Chains MakeServiceLookup(rt.device()) after rt's current lookup.
absl::Status AttachTuningService(Runtime& rt, const ServiceLookupOptions& options);

}  // namespace parallax::service
