#include "graph_timing.h"

#include <algorithm>
#include <cmath>

#include "absl/status/status.h"
#include "device_buffer.h"

namespace parallax::search::internal {

double Median(const std::vector<double>& v) {
  if (v.empty()) return 0;
  return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

absl::StatusOr<SampleStats> TimeGraph(CUstream stream, const std::function<absl::Status(CUstream)>& pass,
                                      int launches, int warmup, double min_sample_us, int reps) {
  if (reps < 1 || launches < 1)
    return absl::InvalidArgumentError("timing needs at least one sample and one launch per pass");
  const cu::Api* d = Api();
  for (int w = 0; w < std::max(1, warmup); ++w) PLX_RETURN_IF_ERROR(pass(stream));
  PLX_CU_RETURN_IF_ERROR(d, cuStreamSynchronize(stream));

  CUgraph graph = nullptr;
  CUgraphExec exec = nullptr;
  CUevent start = nullptr, stop = nullptr;
  struct Cleanup {
    const cu::Api* d;
    CUgraph* g;
    CUgraphExec* e;
    CUevent* a;
    CUevent* b;
    ~Cleanup() {
      if (*e) d->cuGraphExecDestroy(*e);
      if (*g) d->cuGraphDestroy(*g);
      if (*a) d->cuEventDestroy_v2(*a);
      if (*b) d->cuEventDestroy_v2(*b);
    }
  } cleanup{d, &graph, &exec, &start, &stop};

  PLX_CU_RETURN_IF_ERROR(d, cuStreamBeginCapture_v2(stream, CU_STREAM_CAPTURE_MODE_THREAD_LOCAL));
  const absl::Status captured = pass(stream);
  const CUresult end = d->cuStreamEndCapture(stream, &graph);
  PLX_RETURN_IF_ERROR(captured);
  PLX_RETURN_IF_ERROR(cu::Check(end, "cuStreamEndCapture"));
  PLX_CU_RETURN_IF_ERROR(d, cuGraphInstantiateWithFlags(&exec, graph, 0));
  PLX_CU_RETURN_IF_ERROR(d, cuEventCreate(&start, 0));
  PLX_CU_RETURN_IF_ERROR(d, cuEventCreate(&stop, 0));

  auto sample = [&](int replays, float* ms) -> absl::Status {
    PLX_CU_RETURN_IF_ERROR(d, cuEventRecord(start, stream));
    for (int i = 0; i < replays; ++i) PLX_CU_RETURN_IF_ERROR(d, cuGraphLaunch(exec, stream));
    PLX_CU_RETURN_IF_ERROR(d, cuEventRecord(stop, stream));
    PLX_CU_RETURN_IF_ERROR(d, cuEventSynchronize(stop));
    PLX_CU_RETURN_IF_ERROR(d, cuEventElapsedTime(ms, start, stop));
    return absl::OkStatus();
  };
  float once_ms = 0;
  PLX_RETURN_IF_ERROR(sample(1, &once_ms));  // calibrate: replays per sample
  const int inner = std::clamp(static_cast<int>(std::ceil(min_sample_us / std::max(1e-3, once_ms * 1e3))), 1, 1000);
  float ms = 0;
  PLX_RETURN_IF_ERROR(sample(inner, &ms));  // one more warm sample, not kept
  std::vector<double> us;
  for (int i = 0; i < reps; ++i) {
    PLX_RETURN_IF_ERROR(sample(inner, &ms));
    us.push_back(ms * 1e3 / (double(inner) * launches));
  }
  std::sort(us.begin(), us.end());
  return SampleStats{Median(us), us.front(), us.back()};
}

}  // namespace parallax::search::internal
