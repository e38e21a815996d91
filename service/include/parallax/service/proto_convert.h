// Our IR and device types as the proto describes them: what every client (the CLI, the
// runtime's service lookup) sends, and what the server's validation reads back.
#pragma once

#include "parallax/codegen/variant.h"
#include "parallax/runtime/device.h"
#include "parallax/v1/tuner.pb.h"

namespace parallax::service {

// context_len: prefill only (0 = seqlen, a full causal prefill).
v1::Problem ProblemToProto(const Problem& p, const Algorithm& a, int batch, int seqlen, int context_len = 0);
// The fields the server's fingerprint is made of (DeviceInfo::fingerprint()).
v1::DeviceFingerprint DeviceToProto(const DeviceInfo& d);
// The inverse, for those fields (the rest stay default); not validated.
DeviceInfo DeviceFromProto(const v1::DeviceFingerprint& d);

}  // namespace parallax::service
