#include "device_buffer.h"

#include <algorithm>

#include "host_inputs.h"

namespace parallax::search::internal {

const cu::Api* Api() { return *cu::Driver(); }

DevBuf::~DevBuf() {
  if (p) Api()->cuMemFree_v2(p);
}

absl::Status DevBuf::Alloc(size_t n) {
  bytes = std::max<size_t>(n, 2);
  PLX_CU_RETURN_IF_ERROR(Api(), cuMemAlloc_v2(&p, bytes));
  return absl::OkStatus();
}

absl::Status DevBuf::Upload(const void* src, size_t n) {
  PLX_RETURN_IF_ERROR(Alloc(n));
  if (n > 0) PLX_CU_RETURN_IF_ERROR(Api(), cuMemcpyHtoD_v2(p, src, n));
  return absl::OkStatus();
}

absl::Status Poison(void* p, size_t elems, DType t) {
  PLX_CU_RETURN_IF_ERROR(Api(), cuMemsetD16_v2(reinterpret_cast<CUdeviceptr>(p), PoisonBits(t), elems));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<double>> Download(const void* p, size_t elems, DType t) {
  std::vector<uint16_t> h(elems);
  PLX_RETURN_IF_ERROR(cu::Check(Api()->cuMemcpyDtoH_v2(h.data(), reinterpret_cast<CUdeviceptr>(p), elems * 2),
                                "download output"));
  std::vector<double> d(elems);
  for (size_t i = 0; i < elems; ++i) d[i] = FromHalfBits(h[i], t);
  return d;
}

}  // namespace parallax::search::internal
