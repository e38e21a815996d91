// The sm_90a prefill and decode families' TMA preconditions (runtime/src/tma_params.h): which calls TMA
// can read, and why not otherwise; the runtime keeps the others on the portable family.
#include "tma_params.h"

#include <gtest/gtest.h>

#include "gmock/gmock.h"

namespace parallax {
namespace {

using ::testing::HasSubstr;

// A padded bf16 [B=2, L=100, H, D=128] call with q/r/k/v/out at aligned fake addresses.
PrefillCall Call(int hq = 8, int hkv = 2) {
  PrefillArgs a;
  a.dtype = DType::kBF16;
  a.batch = 2; a.num_q_heads = hq; a.num_kv_heads = hkv; a.head_dim = 128;
  a.q = reinterpret_cast<void*>(0x10000); a.r = reinterpret_cast<void*>(0x20000);
  a.k = reinterpret_cast<void*>(0x30000); a.v = reinterpret_cast<void*>(0x40000);
  a.out = reinterpret_cast<void*>(0x50000);
  a.seqlen_q = a.seqlen_k = 100;
  a.q_stride_h = a.r_stride_h = a.o_stride_h = a.k_stride_h = a.v_stride_h = 128;
  a.q_stride_l = a.r_stride_l = a.o_stride_l = int64_t(hq) * 128;
  a.k_stride_l = a.v_stride_l = int64_t(hkv) * 128;
  a.q_stride_b = a.r_stride_b = a.o_stride_b = 100 * a.q_stride_l;
  a.k_stride_b = a.v_stride_b = 100 * a.k_stride_l;
  return ToPrefillCall(a);
}

TEST(TmaParams, AlignedPaddedTensorsAreReadable) { EXPECT_TRUE(CheckTmaReadable(Call()).ok()); }

TEST(TmaParams, OneHeadAndOneSequenceNeedNoStride) {
  PrefillCall c = Call(1, 1);
  c.params.batch = 1;
  c.params.q_stride_b = c.params.k_stride_b = c.params.v_stride_b = c.params.r_stride_b = 0;
  c.params.q_stride_h = c.params.r_stride_h = c.params.k_stride_h = c.params.v_stride_h = 3;  // never stepped
  EXPECT_TRUE(CheckTmaReadable(c).ok()) << CheckTmaReadable(c);
}

TEST(TmaParams, UnalignedBaseOrStrideIsNamed) {
  PrefillCall c = Call();
  c.params.k = reinterpret_cast<void*>(0x30008);
  EXPECT_THAT(CheckTmaReadable(c).message(), HasSubstr("k: base address is not 16-byte aligned"));
  c = Call();
  c.params.v_stride_l = 2 * 128 + 4;  // 520 bytes a token
  EXPECT_THAT(CheckTmaReadable(c).message(), HasSubstr("v: token stride of 260 elements is not a multiple of 16 bytes"));
  c = Call();
  c.params.r_stride_h = 129;
  EXPECT_THAT(CheckTmaReadable(c).message(), HasSubstr("r: head stride"));
}

TEST(TmaParams, PackedCallsNeedTheirExtents) {
  PrefillCall c = Call();
  int cu[3] = {0, 60, 100};
  c.params.cu_seqlens_q = c.params.cu_seqlens_k = cu;
  EXPECT_THAT(CheckTmaReadable(c).message(), HasSubstr("total_q / total_k"));
  c.total_q = c.total_k = 100;
  EXPECT_TRUE(CheckTmaReadable(c).ok());
}

// Extend over pages: the maps span the pool (page stride, slot stride), so the page count
// is needed; a page stride TMA cannot step is named.
TEST(TmaParams, PagedCallsNeedThePageCount) {
  PrefillCall c = Call();
  int table[2 * 4] = {};
  int used[2] = {100, 60};
  c.params.block_table = table;
  c.params.block_table_stride = 4;
  c.params.seqused_k = used;
  c.problem.kv_layout = KvLayout::kPaged;
  c.problem.page_size = 32;
  c.params.k_stride_b = c.params.v_stride_b = 32 * c.params.k_stride_l;  // page stride
  EXPECT_THAT(CheckTmaReadable(c).message(), HasSubstr("page count (total_k)"));
  c.total_k = 8;
  EXPECT_TRUE(CheckTmaReadable(c).ok()) << CheckTmaReadable(c);
  c.params.v_stride_b = 32 * c.params.k_stride_l + 4;
  EXPECT_THAT(CheckTmaReadable(c).message(), HasSubstr("v: batch stride"));
}

TEST(TmaParams, ProbeNoneHasNoRMap) {
  PrefillCall c = Call();
  c.params.r = nullptr;
  c.params.r_stride_h = 7;  // unused without r
  EXPECT_TRUE(CheckTmaReadable(c).ok());
}


// The sm_90a decode family's maps (PlxDecodeTmaParams): a contiguous bf16 cache
// [B=3, Lmax=500, Hkv, D=128]; the runtime refuses a named key on calls TMA cannot read and
// keeps a tuned one on the portable family.
DecodeCall Decode(int hkv = 2) {
  DecodeArgs a;
  a.dtype = DType::kBF16;
  a.batch = 3; a.num_q_heads = 8; a.num_kv_heads = hkv; a.head_dim = 128;
  a.q = reinterpret_cast<void*>(0x10000); a.k = reinterpret_cast<void*>(0x30000);
  a.v = reinterpret_cast<void*>(0x40000); a.out = reinterpret_cast<void*>(0x50000);
  a.seqlen = 500;
  a.q_stride_h = a.o_stride_h = 128; a.q_stride_b = a.o_stride_b = 8 * 128;
  a.k_stride_h = a.v_stride_h = 128;
  a.k_stride_1 = a.v_stride_1 = int64_t(hkv) * 128;
  a.k_stride_0 = a.v_stride_0 = 500 * a.k_stride_1;
  return ToDecodeCall(a);
}

TEST(DecodeTmaParams, AlignedContiguousCachesAreReadable) {
  const DecodeCall c = Decode();
  EXPECT_TRUE(CheckDecodeTmaReadable(c.params, c.problem, c.num_pages).ok()) << CheckDecodeTmaReadable(c.params, c.problem, c.num_pages);
  DecodeCall one = Decode(1);  // one kv head: its stride is never stepped along
  one.params.k_stride_h = one.params.v_stride_h = 3;
  EXPECT_TRUE(CheckDecodeTmaReadable(one.params, one.problem, one.num_pages).ok()) << CheckDecodeTmaReadable(one.params, one.problem, one.num_pages);
}

TEST(DecodeTmaParams, TheMessageSaysWhatTmaCannotRead) {
  DecodeCall c = Decode();
  c.params.k = reinterpret_cast<void*>(0x30008);
  EXPECT_THAT(CheckDecodeTmaReadable(c.params, c.problem, c.num_pages).message(), HasSubstr("k: base address is not 16-byte aligned"));
  c = Decode();
  c.params.v_stride_1 = 260;
  EXPECT_THAT(CheckDecodeTmaReadable(c.params, c.problem, c.num_pages).message(),
              HasSubstr("v: token stride of 260 elements is not a multiple of 16 bytes"));
  c = Decode();
  c.params.k_stride_0 = 500 * 256 + 4;
  EXPECT_THAT(CheckDecodeTmaReadable(c.params, c.problem, c.num_pages).message(), HasSubstr("k: batch stride"));
  c = Decode();
  static const int lens[3] = {1, 2, 3};
  c.params.seqlens = lens;  // a device pointer in a real call; only its presence matters here
  c.params.seqlen = 0;
  EXPECT_THAT(CheckDecodeTmaReadable(c.params, c.problem, c.num_pages).message(), HasSubstr("seqlen=0 with per-sequence lengths"));
  c.params.seqlen = 500;
  EXPECT_TRUE(CheckDecodeTmaReadable(c.params, c.problem, c.num_pages).ok());
  c.problem.kv_layout = KvLayout::kPaged;  // a paged problem without a block table
  EXPECT_THAT(CheckDecodeTmaReadable(c.params, c.problem, c.num_pages).message(), HasSubstr("disagree"));
}

// A paged cache [num_pages, 16, Hkv, 128]: the maps span the pool, so the page count is
// needed; the page stride must be one TMA can step.
TEST(DecodeTmaParams, PagedCachesNeedThePageCount) {
  DecodeCall c = Decode();
  static const int table[3 * 32] = {};
  static const int lens[3] = {500, 20, 1};
  c.params.block_table = table;
  c.params.block_table_stride = 32;
  c.params.seqlens = lens;
  c.problem.kv_layout = KvLayout::kPaged;
  c.problem.page_size = 16;
  c.params.k_stride_0 = c.params.v_stride_0 = 16 * c.params.k_stride_1;  // the page stride
  EXPECT_THAT(CheckDecodeTmaReadable(c.params, c.problem, 0).message(), HasSubstr("num_pages=0"));
  EXPECT_THAT(CheckDecodeTmaReadable(c.params, c.problem, int64_t(1) << 32).message(),
              HasSubstr("without its page count"));
  EXPECT_TRUE(CheckDecodeTmaReadable(c.params, c.problem, 96).ok()) << CheckDecodeTmaReadable(c.params, c.problem, 96);
  c.params.v_stride_0 = 16 * c.params.k_stride_1 + 4;
  EXPECT_THAT(CheckDecodeTmaReadable(c.params, c.problem, 96).message(), HasSubstr("v: batch stride"));
}

}  // namespace
}  // namespace parallax
