// Extend over a paged cache through plx_prefill, and multi-token decode (q [B, Tq, Hq, D])
// through plx_decode, which runs as that extend: what each accepts and refuses, on the host.
#include "c_api_fixtures.h"
#include "c_api_internal.h"

namespace parallax::capi_fixtures {
namespace {

// 16 pages of 16 slots, block table [B, 4]: queries packed by cu_seqlens_q.
plx_prefill_args ValidExtend() {
  plx_prefill_args a = ValidPackedPrefill();
  a.k = T(Fake(3), PLX_BF16, {16, 16, kHkv, kD});
  a.v = T(Fake(4), PLX_BF16, {16, 16, kHkv, kD});
  a.cu_seqlens_k = T(nullptr, PLX_INT32, {3});
  a.max_seqlen_k = -1;
  a.block_table = T(Fake(8), PLX_INT32, {kB, 4});
  a.seqused_k = T(Fake(9), PLX_INT32, {kB});
  return a;
}

TEST(CApiExtend, PagedPrefillTranslatesToThePagedProblem) {
  plx_prefill_args a = ValidExtend();
  ASSERT_EQ(plx_prefill_validate(&a), PLX_OK) << plx_last_error();
  absl::StatusOr<PrefillCall> c = capi::TranslatePrefillArgs(a);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->problem.kv_layout, KvLayout::kPaged);
  EXPECT_EQ(c->problem.page_size, 16);
  EXPECT_EQ(c->params.block_table, Fake(8));
  EXPECT_EQ(c->params.seqused_k, Fake(9));
  EXPECT_EQ(c->params.cu_seqlens_k, nullptr);
  EXPECT_EQ(c->params.block_table_stride, 4);
  EXPECT_EQ(c->params.k_stride_b, 16 * kHkv * kD);  // the page stride
  EXPECT_EQ(c->params.k_stride_l, kHkv * kD);       // the slot stride
  EXPECT_EQ(c->params.seqlen_k, 64);                 // no hint: the table's capacity
  a.max_seqlen_k = 40;                               // the live bound picks the kernel
  c = capi::TranslatePrefillArgs(a);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->params.seqlen_k, 40);
  // Padded queries over pages work as well.
  plx_prefill_args padded = ValidExtend();
  padded.q = padded.r = padded.out = T(Fake(1), PLX_BF16, {kB, 7, kHq, kD});
  padded.r.data = Fake(2);
  padded.out.data = Fake(5);
  padded.cu_seqlens_q = T(nullptr, PLX_INT32, {3});
  EXPECT_EQ(plx_prefill_validate(&padded), PLX_OK) << plx_last_error();
}

TEST(CApiExtend, PagedPrefillRefusals) {
  plx_prefill_args a = ValidExtend();
  a.seqused_k = T(nullptr, PLX_INT32, {kB});
  ExpectPrefillError(a, PLX_ERROR_INVALID_ARGUMENT, {"seqused_k: required with block_table"});
  a = ValidExtend();
  a.cu_seqlens_k = T(Fake(7), PLX_INT32, {3});
  ExpectPrefillError(a, PLX_ERROR_INVALID_ARGUMENT, {"cu_seqlens_k: not with a paged cache"});
  a = ValidPackedPrefill();
  a.seqused_k = T(Fake(9), PLX_INT32, {kB});
  ExpectPrefillError(a, PLX_ERROR_INVALID_ARGUMENT, {"seqused_k: only with a paged cache"});
  a = ValidExtend();
  a.seqused_k = T(Fake(9), PLX_INT32, {kB + 1});
  ExpectPrefillError(a, PLX_ERROR_INVALID_ARGUMENT, {"seqused_k: shape[0]=3", "cu_seqlens_q.shape[0] - 1"});
  a = ValidExtend();
  a.block_table = T(Fake(8), PLX_INT32, {kB + 1, 4});
  ExpectPrefillError(a, PLX_ERROR_INVALID_ARGUMENT, {"block_table: shape[0]=3"});
  a = ValidExtend();
  a.k = a.v = T(Fake(3), PLX_BF16, {16, 24, kHkv, kD});
  a.v.data = Fake(4);
  ExpectPrefillError(a, PLX_ERROR_UNSUPPORTED, {"page_size=24", "power of two"});
  a = ValidExtend();
  a.max_seqlen_k = 65;
  ExpectPrefillError(a, PLX_ERROR_INVALID_ARGUMENT, {"max_seqlen_k=65", "capacity 64"});
  a = ValidExtend();
  a.k = T(Fake(3), PLX_BF16, {16, kHkv, kD});
  ExpectPrefillError(a, PLX_ERROR_INVALID_ARGUMENT, {"k: ndim=3", "paged [num_pages, page_size, Hkv, D]"});
  // The wgmma family cannot follow a block table: its key is refused for a paged cache.
  Problem p;
  p.mode = Mode::kPrefill; p.dtype = DType::kBF16; p.head_dim = kD; p.num_q_heads = kHq; p.num_kv_heads = kHkv;
  absl::StatusOr<Variant> hopper = Variant::Create(p, Algorithm{}, DefaultSchedule(p, Algorithm{}, 90));
  ASSERT_TRUE(hopper.ok()) << hopper.status();
  std::string key = hopper->Key();
  key.replace(key.find("contig"), 6, "paged16");
  a = ValidExtend();
  a.variant = key.c_str();
  ExpectPrefillError(a, PLX_ERROR_INVALID_ARGUMENT, {"paged KV runs on path mma or fma"});
}

// Multi-token decode: [B, Tq, Hq, D] with Tq > 1 runs as extend over the same cache.
plx_decode_args MultiToken(plx_decode_args a, int tq) {
  a.q = T(Fake(1), PLX_BF16, {kB, tq, kHq, kD});
  a.r = T(Fake(2), PLX_BF16, {kB, tq, kHq, kD});
  a.out = T(Fake(5), PLX_BF16, {kB, tq, kHq, kD});
  return a;
}

TEST(CApiMultiTokenDecode, RunsAsExtendOverTheSameCache) {
  const plx_decode_args a = MultiToken(ValidPagedDecode(), 4);
  ASSERT_EQ(plx_decode_validate(&a), PLX_OK) << plx_last_error();
  absl::StatusOr<std::optional<plx_prefill_args>> e = capi::DecodeAsExtend(a);
  ASSERT_TRUE(e.ok()) << e.status();
  ASSERT_TRUE(e->has_value());
  const plx_prefill_args& p = **e;
  EXPECT_EQ(p.seqused_k.data, a.cache_seqlens.data);
  EXPECT_EQ(p.block_table.data, a.block_table.data);
  EXPECT_EQ(p.cu_seqlens_q.data, nullptr);
  absl::StatusOr<PrefillCall> c = capi::TranslatePrefillArgs(p);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->params.seqlen_q, 4);
  EXPECT_EQ(c->problem.kv_layout, KvLayout::kPaged);
  // One token per sequence stays decode, in either spelling.
  for (const plx_decode_args& one : {ValidPagedDecode(), MultiToken(ValidPagedDecode(), 1)}) {
    absl::StatusOr<std::optional<plx_prefill_args>> d = capi::DecodeAsExtend(one);
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_FALSE(d->has_value());
  }
  // A contiguous cache the sequences fill needs no lengths.
  const plx_decode_args full = MultiToken(ValidDecode(), 8);
  EXPECT_EQ(plx_decode_validate(&full), PLX_OK) << plx_last_error();
}

TEST(CApiMultiTokenDecode, RefusesWhatOnlyDecodeTakes) {
  plx_decode_args a = MultiToken(ValidPagedDecode(), 4);
  a.num_splits = 2;
  ExpectDecodeError(a, PLX_ERROR_INVALID_ARGUMENT, {"num_splits=2", "multi-token decode", "runs as extend"});
  a = MultiToken(ValidPagedDecode(), 4);
  const std::string decode_key = DefaultKey(Mode::kDecode, DType::kBF16);
  a.variant = decode_key.c_str();
  ExpectDecodeError(a, PLX_ERROR_INVALID_ARGUMENT, {"is a decode kernel", "prefill key"});
  a = MultiToken(ValidDecode(), 4);
  a.cache_seqlens = T(Fake(7), PLX_INT32, {kB});
  ExpectDecodeError(a, PLX_ERROR_UNSUPPORTED, {"cache_seqlens", "contiguous cache", "paged cache"});
  a = MultiToken(ValidPagedDecode(), 4);
  a.out = T(Fake(5), PLX_BF16, {kB, 3, kHq, kD});
  ExpectDecodeError(a, PLX_ERROR_INVALID_ARGUMENT, {"out"});
}

}  // namespace
}  // namespace parallax::capi_fixtures
