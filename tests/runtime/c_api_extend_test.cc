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
  EXPECT_EQ(c->total_k, 16);                         // the pool's pages: the TMA maps' extent
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
  // The wgmma family reads pages of 16 keys or more by TMA: its key is refused for pages of 8.
  Problem p;
  p.mode = Mode::kPrefill; p.dtype = DType::kBF16; p.head_dim = kD; p.num_q_heads = kHq; p.num_kv_heads = kHkv;
  absl::StatusOr<Variant> hopper = Variant::Create(p, Algorithm{}, DefaultSchedule(p, Algorithm{}, 90));
  ASSERT_TRUE(hopper.ok()) << hopper.status();
  std::string key = hopper->Key();
  key.replace(key.find("contig"), 6, "paged8");
  a = ValidExtend();
  a.k = T(Fake(3), PLX_BF16, {16, 8, kHkv, kD});
  a.v = T(Fake(4), PLX_BF16, {16, 8, kHkv, kD});
  a.variant = key.c_str();
  ExpectPrefillError(a, PLX_ERROR_INVALID_ARGUMENT, {"page_size=8", "smaller pages run on path mma or fma"});
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

// On sm_90 the decode kernels (decode_sm90) take Tq <= 16 over contiguous caches and pages of
// >= 8 keys: translated as a decode problem with queries = Tq and token strides.
TEST(CApiMultiTokenDecode, RunsAsDecodeOnSm90WhereDecodeSm90ServesIt) {
  plx_decode_args a = MultiToken(ValidPagedDecode(), 4);
  EXPECT_TRUE(capi::MultiTokenRunsAsDecode(a, 90));
  EXPECT_FALSE(capi::MultiTokenRunsAsDecode(a, 80));
  EXPECT_FALSE(capi::MultiTokenRunsAsDecode(a, 0));
  absl::StatusOr<std::optional<plx_prefill_args>> e = capi::DecodeAsExtend(a, 90);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_FALSE(e->has_value());
  absl::StatusOr<DecodeCall> c = capi::TranslateDecodeCall(a);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->problem.queries, 4);
  EXPECT_EQ(c->params.q_stride_t, kHq * kD);
  EXPECT_EQ(c->params.o_stride_t, kHq * kD);
  EXPECT_EQ(c->params.q_stride_b, 4 * kHq * kD);
  // A contiguous cache with per-sequence lengths, and splits: decode takes both.
  a = MultiToken(ValidDecode(), 8);
  a.cache_seqlens = T(Fake(7), PLX_INT32, {kB});
  a.num_splits = 4;
  EXPECT_TRUE(capi::MultiTokenRunsAsDecode(a, 90));
  EXPECT_TRUE(capi::TranslateDecodeCall(a).ok());
  // Not served: more than 16 tokens, pages under 8 keys, statistics, a prefill key.
  EXPECT_FALSE(capi::MultiTokenRunsAsDecode(MultiToken(ValidPagedDecode(), 17), 90));
  a = MultiToken(ValidPagedDecode(), 4);
  a.k = T(Fake(3), PLX_BF16, {64, 4, kHkv, kD});
  a.v = T(Fake(4), PLX_BF16, {64, 4, kHkv, kD});
  EXPECT_FALSE(capi::MultiTokenRunsAsDecode(a, 90));
  a = MultiToken(ValidPagedDecode(), 16);  // head_dim 256 takes up to 8 tokens
  for (plx_tensor* t : {&a.q, &a.r, &a.out}) t->shape[3] = 256;
  EXPECT_FALSE(capi::MultiTokenRunsAsDecode(a, 90));
  a = MultiToken(ValidPagedDecode(), 4);
  a.lse = T(Fake(8), PLX_FLOAT32, {kB, kHq, 4});
  EXPECT_FALSE(capi::MultiTokenRunsAsDecode(a, 90));
  a = MultiToken(ValidPagedDecode(), 4);
  a.variant = "prefill-bf16-d128-h8x2-paged16-nowin.learned-plain.mma-m64-n64-w4-s2";
  EXPECT_FALSE(capi::MultiTokenRunsAsDecode(a, 90));
  // A decode key of the one-token problem does not match the call's.
  a = MultiToken(ValidPagedDecode(), 4);
  const std::string one_token = DefaultKey(Mode::kDecode, DType::kBF16);
  a.variant = one_token.c_str();
  EXPECT_TRUE(capi::MultiTokenRunsAsDecode(a, 90));
  EXPECT_FALSE(capi::TranslateDecodeCall(a).ok());
  // r and out must have q's token count.
  a = MultiToken(ValidPagedDecode(), 4);
  a.out = T(Fake(5), PLX_BF16, {kB, 3, kHq, kD});
  absl::StatusOr<DecodeCall> bad = capi::TranslateDecodeCall(a);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("[B, Tq, Hq, D] = [2, 4, 8, 128]"), std::string::npos) << bad.status();
}

// The extend form (no device serves the tokens as decode) refuses what only decode takes.
// plx_decode_validate accepts either form, so the refusals show where the decode form is
// unavailable too: pages of 4 keys.
plx_decode_args SmallPages(plx_decode_args a) {
  a.k = T(Fake(3), PLX_BF16, {64, 4, kHkv, kD});
  a.v = T(Fake(4), PLX_BF16, {64, 4, kHkv, kD});
  return a;
}

void ExpectExtendError(const plx_decode_args& a, absl::StatusCode code, std::initializer_list<const char*> needles) {
  absl::StatusOr<std::optional<plx_prefill_args>> e = capi::DecodeAsExtend(a, 0);
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.status().code(), code) << e.status();
  for (const char* n : needles) EXPECT_NE(e.status().message().find(n), std::string::npos) << n << ": " << e.status();
}

// Without a key named, decode takes the tokens where the H200 measured it faster than extend.
TEST(CApiMultiTokenDecode, RoutesByTheMeasuredRuleOfThumb) {
  EXPECT_TRUE(capi::DecodeBeatsExtend(1, 16, 32, 8));   // B=1: 2.5-2.9x extend's speed
  EXPECT_TRUE(capi::DecodeBeatsExtend(8, 8, 32, 8));    // 32 rows per kv head: 1.3-1.5x
  EXPECT_FALSE(capi::DecodeBeatsExtend(8, 16, 32, 8));  // 64 rows: 0.67-0.80x
  EXPECT_TRUE(capi::DecodeBeatsExtend(8, 16, 8, 8));    // MHA B=8: 1.05-1.35x
  EXPECT_FALSE(capi::DecodeBeatsExtend(32, 2, 8, 8));   // MHA B=32: 0.75-1.02x
  plx_decode_args a = MultiToken(ValidPagedDecode(), 16);  // B=2, GQA 4: 64 rows per kv head
  EXPECT_FALSE(capi::MultiTokenRunsAsDecode(a, 90));
  const std::string key = "decode-bf16-d128-h8x2-paged16-nowin-q16.learned-plain.wgmma-n64-w4-s4-splitauto-g1";
  a.variant = key.c_str();  // a named decode key runs as decode
  EXPECT_TRUE(capi::MultiTokenRunsAsDecode(a, 90));
  absl::StatusOr<DecodeCall> c = capi::TranslateDecodeCall(a);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->variant_key, key);
}

TEST(CApiMultiTokenDecode, RefusesWhatOnlyDecodeTakes) {
  plx_decode_args a = MultiToken(ValidPagedDecode(), 4);
  a.num_splits = 2;
  ExpectExtendError(a, absl::StatusCode::kInvalidArgument, {"num_splits=2", "multi-token decode", "runs as extend"});
  EXPECT_EQ(plx_decode_validate(&a), PLX_OK) << plx_last_error();  // the decode form takes splits
  a = SmallPages(a);
  ExpectDecodeError(a, PLX_ERROR_INVALID_ARGUMENT, {"num_splits=2", "multi-token decode", "runs as extend"});
  a = MultiToken(ValidPagedDecode(), 4);
  const std::string decode_key = DefaultKey(Mode::kDecode, DType::kBF16);
  a.variant = decode_key.c_str();
  ExpectExtendError(a, absl::StatusCode::kInvalidArgument, {"is a decode kernel", "prefill key"});
  ExpectDecodeError(SmallPages(a), PLX_ERROR_INVALID_ARGUMENT, {"is a decode kernel", "prefill key"});
  a = MultiToken(ValidDecode(), 4);
  a.cache_seqlens = T(Fake(7), PLX_INT32, {kB});
  ExpectExtendError(a, absl::StatusCode::kUnimplemented, {"cache_seqlens", "contiguous cache", "paged cache"});
  EXPECT_EQ(plx_decode_validate(&a), PLX_OK) << plx_last_error();  // the decode form takes lengths
  a = MultiToken(ValidPagedDecode(), 4);
  a.out = T(Fake(5), PLX_BF16, {kB, 3, kHq, kD});
  ExpectDecodeError(a, PLX_ERROR_INVALID_ARGUMENT, {"out"});
}

// Decode with statistics (lse, tbar, vbar) runs as extend with the query tokens it has: one
// token's [B, Hq, D] as [B, 1, Hq, D], its [B, Hq] statistics as [B, Hq, 1].
TEST(CApiDecodeStats, OneTokenRunsAsExtend) {
  plx_decode_args a = ValidPagedDecode();
  a.lse = T(Fake(10), PLX_FLOAT32, {kB, kHq}, {16, 1});  // rows padded to 16
  a.tbar = T(Fake(11), PLX_FLOAT32, {kB, kHq}, {16, 1});
  a.vbar = T(Fake(12), PLX_BF16, {kB, kHq, kD});
  ASSERT_EQ(plx_decode_validate(&a), PLX_OK) << plx_last_error();
  absl::StatusOr<std::optional<plx_prefill_args>> e = capi::DecodeAsExtend(a);
  ASSERT_TRUE(e.ok()) << e.status();
  ASSERT_TRUE(e->has_value());
  const plx_prefill_args& p = **e;
  EXPECT_EQ(p.q.ndim, 4);
  EXPECT_EQ(p.q.shape[1], 1);
  EXPECT_EQ(p.lse.ndim, 3);
  EXPECT_EQ(p.lse.shape[2], 1);
  EXPECT_EQ(p.causal, 1);
  absl::StatusOr<PrefillCall> c = capi::TranslatePrefillArgs(p);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->params.seqlen_q, 1);
  EXPECT_EQ(c->params.causal, 1);
  EXPECT_EQ(c->params.lse, Fake(10));
  EXPECT_EQ(c->params.tbar, Fake(11));
  EXPECT_EQ(c->params.stats_stride_b, 16);
  EXPECT_EQ(c->params.stats_stride_h, 1);
  EXPECT_EQ(c->params.vbar, Fake(12));
  EXPECT_EQ(c->params.vbar_stride_b, kHq * kD);
  EXPECT_EQ(c->params.vbar_stride_h, kD);
  EXPECT_EQ(c->params.seqused_k, a.cache_seqlens.data);
  // vbar alone is enough to take this path; none at all keeps the decode kernel.
  plx_decode_args v = ValidPagedDecode();
  v.vbar = T(Fake(12), PLX_BF16, {kB, kHq, kD});
  e = capi::DecodeAsExtend(v);
  ASSERT_TRUE(e.ok() && e->has_value()) << e.status();
  e = capi::DecodeAsExtend(ValidPagedDecode());
  ASSERT_TRUE(e.ok() && !e->has_value()) << e.status();
  // A contiguous cache the sequence fills: the padded extend over all Lmax keys.
  plx_decode_args full = ValidDecode();
  full.lse = T(Fake(10), PLX_FLOAT32, {kB, kHq});
  ASSERT_EQ(plx_decode_validate(&full), PLX_OK) << plx_last_error();
  c = capi::TranslatePrefillArgs(**capi::DecodeAsExtend(full));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->params.seqlen_k, kL);
}

TEST(CApiDecodeStats, TokensDimensionKeepsFlashAttentionsLayout) {
  // q [B, Tq, Hq, D] (Tq = 1 and 4): lse / tbar [B, Hq, Tq], vbar like out.
  for (int tq : {1, 4}) {
    plx_decode_args a = MultiToken(ValidPagedDecode(), tq);
    a.lse = T(Fake(10), PLX_FLOAT32, {kB, kHq, tq});
    a.vbar = T(Fake(12), PLX_BF16, {kB, tq, kHq, kD});
    EXPECT_EQ(plx_decode_validate(&a), PLX_OK) << tq << ": " << plx_last_error();
    a.lse = T(Fake(10), PLX_FLOAT32, {kB, kHq});
    ExpectDecodeError(a, PLX_ERROR_INVALID_ARGUMENT, {"lse: ndim=2: must be 3 ([B, Hq, Lq])"});
  }
}

TEST(CApiDecodeStats, RefusalsNameTheField) {
  plx_decode_args a = ValidPagedDecode();
  a.lse = T(Fake(10), PLX_FLOAT32, {kB, kHq});
  a.num_splits = 2;
  ExpectDecodeError(a, PLX_ERROR_INVALID_ARGUMENT, {"num_splits=2", "decode with lse/tbar/vbar", "runs as extend"});
  a.num_splits = 0;
  const std::string decode_key = DefaultKey(Mode::kDecode, DType::kBF16);
  a.variant = decode_key.c_str();
  ExpectDecodeError(a, PLX_ERROR_INVALID_ARGUMENT, {"is a decode kernel", "decode with lse/tbar/vbar", "prefill key"});
  a = ValidDecode();
  a.vbar = T(Fake(12), PLX_BF16, {kB, kHq, kD});
  a.cache_seqlens = T(Fake(7), PLX_INT32, {kB});
  ExpectDecodeError(a, PLX_ERROR_UNSUPPORTED, {"cache_seqlens", "decode with lse/tbar/vbar", "paged cache"});
  a = ValidPagedDecode();
  a.lse = T(Fake(10), PLX_FLOAT32, {kB, kHq + 1});
  ExpectDecodeError(a, PLX_ERROR_INVALID_ARGUMENT, {"lse: shape [2, 9] does not match decode's [B, Hq] = [2, 8]"});
  a.lse = T(Fake(10), PLX_FLOAT32, {kB, kHq, 1});
  ExpectDecodeError(a, PLX_ERROR_INVALID_ARGUMENT, {"lse: shape [2, 8, 1] does not match decode's [B, Hq]"});
  a = ValidPagedDecode();
  a.tbar = T(Fake(11), PLX_BF16, {kB, kHq});
  ExpectDecodeError(a, PLX_ERROR_INVALID_ARGUMENT, {"tbar: dtype=bf16: must be float32"});
  a = ValidPagedDecode();
  a.vbar = T(Fake(12), PLX_BF16, {kB, kHq, 64});
  ExpectDecodeError(a, PLX_ERROR_INVALID_ARGUMENT, {"vbar: shape", "does not match out's"});
  a = ValidPagedDecode();
  a.vbar = T(Fake(12), PLX_FP16, {kB, kHq, kD});
  ExpectDecodeError(a, PLX_ERROR_INVALID_ARGUMENT, {"vbar: dtype=fp16 does not match out's bf16"});
}

}  // namespace
}  // namespace parallax::capi_fixtures
