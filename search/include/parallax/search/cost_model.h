// A cheap analytic estimate of decode time, only good for ordering candidates (guided
// search) and for sizing the watchdog's patience. Decode streams K and V once, so the model
// is bytes / bandwidth, stretched by the wave tail and by too few bytes in flight per SM,
// plus launch and split-merge overheads.
#pragma once

#include "parallax/codegen/space.h"
#include "parallax/codegen/variant.h"
#include "parallax/runtime/device.h"

namespace parallax::search {

struct CostInputs {
  int sm_count = 132;
  double mem_gbps = 3350;  // DRAM bandwidth
  DeviceLimits limits = DeviceLimits::Sm90();
};
CostInputs CostInputsFor(const DeviceInfo& dev);

// The split count the runtime would use (Runtime::AutoSplits, with static occupancy).
int ModelSplits(const Variant& v, int batch, int seqlen, const CostInputs& c);

// Estimated microseconds for one decode launch (plus merge) at batch x seqlen.
double EstimateDecodeUs(const Variant& v, int batch, int seqlen, const CostInputs& c);

// Bytes one decode launch must read from memory (K, V, q, r) and write (out).
double DecodeBytes(const Problem& p, const Algorithm& a, int batch, int seqlen);

}  // namespace parallax::search
