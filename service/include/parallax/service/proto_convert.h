// Our IR and device types as the proto describes them: what every client (the CLI, the
// runtime's service lookup) sends, and what the server's validation reads back.
#pragma once

#include "absl/status/statusor.h"
#include "parallax/codegen/variant.h"
#include "parallax/runtime/device.h"
#include "parallax/v1/tuner.pb.h"

namespace parallax::service {

// The mode both ways: MODE_BACKWARD is Mode::kBackward ("bwd"). FromProto: InvalidArgument
// for MODE_UNSPECIFIED and values this server does not know.
v1::Mode ModeToProto(Mode m);
absl::StatusOr<Mode> ModeFromProto(v1::Mode m);

// context_len: prefill and backward only (0 = seqlen, a full causal prefill).
v1::Problem ProblemToProto(const Problem& p, const Algorithm& a, int batch, int seqlen, int context_len = 0);
// The fields the server's fingerprint is made of (DeviceInfo::fingerprint()).
v1::DeviceFingerprint DeviceToProto(const DeviceInfo& d);
// The inverse, for those fields (the rest stay default); not validated.
DeviceInfo DeviceFromProto(const v1::DeviceFingerprint& d);

}  // namespace parallax::service
