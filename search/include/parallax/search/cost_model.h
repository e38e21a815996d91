// A cheap analytic estimate of kernel time, only good for ordering candidates (guided
// search) and for sizing the watchdog's patience. Decode streams K and V once, so the model
// is bytes / bandwidth, stretched by the wave tail and by too few bytes in flight per SM,
// plus launch and split-merge overheads. Prefill is compute-bound: the visible (query, key)
// pairs' arithmetic, plus the masked half of each diagonal tile, over an achieved tensor
// rate, stretched by the wave tail and by too few warps per SM. The backward (mode bwd) is
// costed like prefill at 2.5x its arithmetic and a lower achieved rate, over its grid of key
// blocks (cost_model.cc says where the numbers come from).
#pragma once

#include "parallax/codegen/bucket.h"
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

// Estimated microseconds for one prefill launch: batch x q_len queries (at the end of
// seqlen_k keys, causal, window BenchWindow()).
double EstimatePrefillUs(const Variant& v, int batch, int q_len, int seqlen_k, const CostInputs& c);

// Estimated microseconds for one backward (its three launches) of that prefill shape.
double EstimateBackwardUs(const Variant& v, int batch, int q_len, int seqlen_k, const CostInputs& c);

// The estimate at a bucket's shape (ShapeOf): decode or prefill by the bucket's kind, the
// backward by the variant's mode (its buckets are prefill buckets).
double EstimateUs(const Variant& v, const ShapeBucket& b, const CostInputs& c);

// Bytes one decode launch must read from memory (K, V, q, r) and write (out).
double DecodeBytes(const Problem& p, const Algorithm& a, int batch, int seqlen);

}  // namespace parallax::search
