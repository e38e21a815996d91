#include "tma_params.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"

namespace parallax {
namespace {

// One tensor as TMA sees it: {D, heads, tokens, batch} with byte strides of the last three.
struct TmaTensor {
  const char* name;
  const void* base;
  long long stride_b, stride_l, stride_h;  // elements
  int heads;
  long long tokens;
  int batch;
};

// Dimensions of extent one are never stepped along; TMA still wants their stride to be a
// positive multiple of 16 bytes.
long long StrideBytes(long long elements, long long extent) {
  const long long bytes = elements * 2;
  return extent <= 1 && (bytes <= 0 || bytes % 16 != 0) ? 16 : bytes;
}

absl::Status Readable(const TmaTensor& t) {
  if (reinterpret_cast<uintptr_t>(t.base) % 16 != 0)
    return absl::FailedPreconditionError(absl::StrCat(t.name, ": base address is not 16-byte aligned"));
  const long long strides[3] = {t.stride_h, t.stride_l, t.stride_b};
  const long long extents[3] = {t.heads, t.tokens, t.batch};
  const char* what[3] = {"head", "token", "batch"};
  for (int i = 0; i < 3; ++i) {
    const long long b = StrideBytes(strides[i], extents[i]);
    if (b <= 0 || b % 16 != 0 || b >= (1LL << 40))
      return absl::FailedPreconditionError(
          absl::StrCat(t.name, ": ", what[i], " stride of ", strides[i], " elements is not a multiple of 16 bytes"));
  }
  return absl::OkStatus();
}

// A paged cache's K/V as TMA sees them: {D, heads, slot, page} over the whole pool.
bool Paged(const PrefillCall& c) { return c.params.block_table != nullptr; }

std::vector<TmaTensor> Tensors(const PrefillCall& c) {
  const PlxPrefillParams& p = c.params;
  const bool packed = p.cu_seqlens_q != nullptr;
  const long long lq = packed ? c.total_q : p.seqlen_q;
  const long long lk = Paged(c) ? c.problem.page_size : packed ? c.total_k : p.seqlen_k;
  const int batch = packed ? 1 : p.batch;
  const int kv_batch = Paged(c) ? static_cast<int>(c.total_k) : batch;
  const int hq = c.problem.num_q_heads, hkv = c.problem.num_kv_heads;
  std::vector<TmaTensor> t = {
      {"q", p.q, p.q_stride_b, p.q_stride_l, p.q_stride_h, hq, lq, batch},
      {"k", p.k, p.k_stride_b, p.k_stride_l, p.k_stride_h, hkv, lk, kv_batch},
      {"v", p.v, p.v_stride_b, p.v_stride_l, p.v_stride_h, hkv, lk, kv_batch},
  };
  if (p.r) t.push_back({"r", p.r, p.r_stride_b, p.r_stride_l, p.r_stride_h, hq, lq, batch});
  return t;
}

absl::Status Encode(const cu::Api* d, const TmaTensor& t, DType dtype, int head_dim, int box_rows,
                    PlxTensorMap* out) {
  static_assert(sizeof(CUtensorMap) == sizeof(PlxTensorMap), "the ABI carries a CUtensorMap");
  CUtensorMap map;
  const cuuint64_t dims[4] = {static_cast<cuuint64_t>(head_dim), static_cast<cuuint64_t>(t.heads),
                              static_cast<cuuint64_t>(std::max(1LL, t.tokens)), static_cast<cuuint64_t>(std::max(1, t.batch))};
  const cuuint64_t strides[3] = {static_cast<cuuint64_t>(StrideBytes(t.stride_h, t.heads)),
                                 static_cast<cuuint64_t>(StrideBytes(t.stride_l, t.tokens)),
                                 static_cast<cuuint64_t>(StrideBytes(t.stride_b, t.batch))};
  const cuuint32_t box[4] = {64, 1, static_cast<cuuint32_t>(box_rows), 1};
  const cuuint32_t elem[4] = {1, 1, 1, 1};
  PLX_CU_RETURN_IF_ERROR(
      d, cuTensorMapEncodeTiled(&map, dtype == DType::kBF16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16,
                                4, const_cast<void*>(t.base), dims, strides, box, elem, CU_TENSOR_MAP_INTERLEAVE_NONE,
                                CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                                CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE));
  std::memcpy(out, &map, sizeof(map));
  return absl::OkStatus();
}

// A contiguous decode cache [B, Lmax, Hkv, D] as TMA sees it: tokens = seqlen, the bound of
// every sequence's keys, so no box reaches past the cache's rows. A paged one is the pool
// {D, Hkv, slot, page}: page_size slots by num_pages pages.
std::vector<TmaTensor> DecodeTensors(const PlxDecodeParams& p, const Problem& problem, int64_t num_pages) {
  const int hkv = problem.num_kv_heads;
  const bool paged = p.block_table != nullptr;
  const long long tokens = paged ? problem.page_size : p.seqlen;
  const int outer = paged ? static_cast<int>(num_pages) : p.batch;
  return {
      {"k", p.k, p.k_stride_0, p.k_stride_1, p.k_stride_h, hkv, tokens, outer},
      {"v", p.v, p.v_stride_0, p.v_stride_1, p.v_stride_h, hkv, tokens, outer},
  };
}

}  // namespace

absl::Status CheckDecodeTmaReadable(const PlxDecodeParams& p, const Problem& problem, int64_t num_pages) {
  const bool paged = p.block_table != nullptr;
  if (paged != (problem.kv_layout == KvLayout::kPaged))
    return absl::FailedPreconditionError("the call's block table and the problem's KV layout disagree");
  if (paged && (num_pages < 1 || num_pages > INT32_MAX))
    return absl::FailedPreconditionError(absl::StrCat(
        "num_pages=", num_pages, ": a paged cache without its page count (k.shape[0]); the TMA maps need the "
        "pool's extent"));
  if (!paged && p.seqlens != nullptr && p.seqlen < 1)
    return absl::FailedPreconditionError(absl::StrCat(
        "seqlen=", p.seqlen, " with per-sequence lengths: the TMA maps need seqlen >= every seqlens[b] "
        "(within the cache's rows) as their token extent"));
  for (const TmaTensor& t : DecodeTensors(p, problem, num_pages))
    if (absl::Status s = Readable(t); !s.ok()) return s;
  return absl::OkStatus();
}

absl::StatusOr<PlxDecodeTmaParams> DecodeTmaParams(const cu::Api* d, const Variant& v, const PlxDecodeParams& p,
                                                   int64_t num_pages) {
  if (d->cuTensorMapEncodeTiled == nullptr)
    return absl::FailedPreconditionError("the CUDA driver lacks cuTensorMapEncodeTiled (needs 12.0+)");
  const Problem& problem = v.problem();
  if (absl::Status s = CheckDecodeTmaReadable(p, problem, num_pages); !s.ok()) return s;
  PlxDecodeTmaParams P{};
  P.p = p;
  const int rows = FamilyOf(v).Boxes(v).kv_rows;
  PlxTensorMap* maps[2] = {&P.tk, &P.tv};
  const std::vector<TmaTensor> tensors = DecodeTensors(p, problem, num_pages);
  for (size_t i = 0; i < tensors.size(); ++i)
    if (absl::Status s = Encode(d, tensors[i], problem.dtype, problem.head_dim, rows, maps[i]); !s.ok())
      return absl::Status(s.code(), absl::StrCat("TMA map of ", tensors[i].name, ": ", s.message()));
  return P;
}

absl::Status CheckTmaReadable(const PrefillCall& c) {
  if (Paged(c) && (c.total_k <= 0 || c.total_k > INT32_MAX))
    return absl::FailedPreconditionError("a paged cache without its page count (total_k): TMA needs the pool's extent");
  if (c.params.cu_seqlens_q != nullptr && (c.total_q <= 0 || (!Paged(c) && c.total_k <= 0)))
    return absl::FailedPreconditionError("packed sequences without total_q / total_k: TMA needs the tensors' extent");
  for (const TmaTensor& t : Tensors(c))
    if (absl::Status s = Readable(t); !s.ok()) return s;
  return absl::OkStatus();
}

absl::StatusOr<PlxPrefillTmaParams> PrefillTmaParams(const cu::Api* d, const Variant& v, const PrefillCall& c) {
  if (d->cuTensorMapEncodeTiled == nullptr)
    return absl::FailedPreconditionError("the CUDA driver lacks cuTensorMapEncodeTiled (needs 12.0+)");
  if (absl::Status s = CheckTmaReadable(c); !s.ok()) return s;
  const KernelFamily::TmaBoxes boxes = FamilyOf(v).Boxes(v);
  PlxPrefillTmaParams P{};
  P.p = c.params;
  PlxTensorMap* maps[4] = {&P.tq, &P.tk, &P.tv, &P.tr};
  const std::vector<TmaTensor> tensors = Tensors(c);
  for (size_t i = 0; i < tensors.size(); ++i) {
    const int rows = i == 1 || i == 2 ? boxes.kv_rows : boxes.qr_rows;
    if (absl::Status s = Encode(d, tensors[i], c.problem.dtype, c.problem.head_dim, rows, maps[i]); !s.ok())
      return absl::Status(s.code(), absl::StrCat("TMA map of ", tensors[i].name, ": ", s.message()));
  }
  return P;
}

}  // namespace parallax
