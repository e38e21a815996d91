// Tests of the search-space enumeration and its static pruning (space.h).
#include "parallax/codegen/space.h"

#include <algorithm>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace parallax {
namespace {

using ::testing::HasSubstr;

Problem MakeProblem(Mode mode, int d, int hq, int hkv, int page_size = 0) {
  Problem p;
  p.mode = mode;
  p.head_dim = d;
  p.num_q_heads = hq;
  p.num_kv_heads = hkv;
  p.kv_layout = page_size > 0 ? KvLayout::kPaged : KvLayout::kContiguous;
  p.page_size = page_size;
  return p;
}

std::vector<std::string> Keys(const std::vector<Variant>& vs) {
  std::vector<std::string> out;
  for (const Variant& v : vs) out.push_back(v.Key());
  return out;
}

struct Case {
  Problem p;
  Algorithm a;
};

std::vector<Case> Cases() {
  return {{MakeProblem(Mode::kDecode, 128, 32, 8), {Probe::kLearned, Affine::kPlain}},
          {MakeProblem(Mode::kDecode, 256, 64, 4, 16), {Probe::kNone, Affine::kPlain}},
          {MakeProblem(Mode::kDecode, 64, 15, 5), {Probe::kLearned, Affine::kAmplified}},
          {MakeProblem(Mode::kPrefill, 128, 32, 8), {Probe::kLearned, Affine::kPlain}},
          {MakeProblem(Mode::kPrefill, 256, 16, 16), {Probe::kNone, Affine::kAmplified}},
          {MakeProblem(Mode::kPrefill, 64, 6, 2), {Probe::kLearned, Affine::kAmplified}}};
}

TEST(Space, EveryVariantIsValidFitsTheDeviceAndIsListedOnce) {
  for (const DeviceLimits& limits : {DeviceLimits::Sm80(), DeviceLimits::Sm90()}) {
    for (const Case& c : Cases()) {
      SpaceOptions o;
      o.limits = limits;
      SpaceStats stats;
      const std::vector<Variant> space = EnumerateSpace(c.p, c.a, o, &stats);
      ASSERT_FALSE(space.empty());
      std::set<std::string> seen;
      for (const Variant& v : space) {
        absl::StatusOr<Variant> again = Variant::Create(v.problem(), v.algorithm(), v.schedule());
        ASSERT_TRUE(again.ok()) << v.Key() << ": " << again.status();
        EXPECT_EQ(again->Key(), v.Key());
        EXPECT_EQ(v.problem(), c.p);
        EXPECT_EQ(v.algorithm(), c.a);
        EXPECT_LE(v.smem_bytes(), limits.max_smem_per_block) << v.Key();
        EXPECT_GE(CtasPerSm(v, limits), 1) << v.Key();
        EXPECT_TRUE(seen.insert(v.Key()).second) << "listed twice: " << v.Key();
      }
      // The reason counts add up and account for every candidate.
      EXPECT_EQ(stats.kept, static_cast<int>(space.size()));
      EXPECT_EQ(stats.candidates, stats.invalid + stats.smem_over_block + stats.no_cta_per_sm + stats.kept);
      int by_field = 0;
      for (const auto& [field, n] : stats.invalid_by_field) by_field += n;
      EXPECT_EQ(by_field, stats.invalid);
    }
  }
}

TEST(Space, OrderIsDeterministic) {
  for (const Case& c : Cases()) EXPECT_EQ(Keys(EnumerateSpace(c.p, c.a, {})), Keys(EnumerateSpace(c.p, c.a, {})));
}

TEST(Space, DecodeCandidateCountIsTheProductOfTheAxes) {
  // paths 2 x block_n 5 x warps 4 x stages 4 x splits 2 x heads_per_cta {1, 2, 4}.
  SpaceOptions o;
  o.splits = {0, 4};
  SpaceStats stats;
  EnumerateSpace(MakeProblem(Mode::kDecode, 128, 32, 8), {}, o, &stats);
  EXPECT_EQ(stats.candidates, 2 * 5 * 4 * 4 * 2 * 3);
}

// Hand count: decode, D=64, one head per group, softmax, mma only. A (warps, block_n) pair is
// valid when each warp gets a multiple of 16 keys: w1 {16..256} 5, w2 {32..256} 4,
// w4 {64,128,256} 3, w8 {128,256} 2 = 14 pairs x 4 stages = 56, less block_n=256 with
// 4 stages (256 KiB of K/V), which Create rejects: 52. On sm_80 block_n=256 with 3 stages
// needs 192 KiB + the q tile > 163 KiB: 4 more (one per warp count) pruned for smem.
TEST(Space, HandCountedSmallSpace) {
  const Problem p = MakeProblem(Mode::kDecode, 64, 8, 8);
  const Algorithm softmax{Probe::kNone, Affine::kPlain};
  SpaceOptions o;
  o.paths = {MathPath::kMma};
  SpaceStats s90, s80;
  EXPECT_EQ(EnumerateSpace(p, softmax, o, &s90).size(), 52u);
  EXPECT_EQ(s90.candidates, 5 * 4 * 4);
  EXPECT_EQ(s90.smem_over_block, 0);
  o.limits = DeviceLimits::Sm80();
  EXPECT_EQ(EnumerateSpace(p, softmax, o, &s80).size(), 48u);
  EXPECT_EQ(s80.smem_over_block, 4);
}

// D=256 with 4 stages: decode only fits block_n <= 32 at all (K+V tiles of 64 KiB per
// stage beyond that), which both devices hold, so the difference comes from prefill, whose
// q/r tiles are per warp. Decode differs from 3 stages on (block_n=64: 192 KiB of K/V).
struct PruneCounts {
  SpaceStats s80, s90;
  std::vector<Variant> v80, v90;
};
PruneCounts PruneOn80And90(Mode mode, std::vector<int> stages) {
  const Problem p = MakeProblem(mode, 256, 32, 8);
  SpaceOptions o;
  o.stages = std::move(stages);
  PruneCounts c;
  c.v90 = EnumerateSpace(p, {}, o, &c.s90);
  o.limits = DeviceLimits::Sm80();
  c.v80 = EnumerateSpace(p, {}, o, &c.s80);
  return c;
}

TEST(Space, Sm80PrunesStrictlyMoreThanSm90ForD256WithFourStages) {
  const PruneCounts decode = PruneOn80And90(Mode::kDecode, {4});
  const PruneCounts prefill = PruneOn80And90(Mode::kPrefill, {4});
  EXPECT_GT(decode.s80.smem_over_block + prefill.s80.smem_over_block,
            decode.s90.smem_over_block + prefill.s90.smem_over_block);
  EXPECT_GT(prefill.s80.smem_over_block, prefill.s90.smem_over_block);
  EXPECT_LT(prefill.v80.size(), prefill.v90.size());
  EXPECT_GE(decode.s80.smem_over_block, decode.s90.smem_over_block);
  const PruneCounts decode3 = PruneOn80And90(Mode::kDecode, {3});
  EXPECT_GT(decode3.s80.smem_over_block, decode3.s90.smem_over_block);
}

TEST(Space, WhatFitsAnA100FitsAnH100) {
  for (Mode mode : {Mode::kDecode, Mode::kPrefill}) {
    const PruneCounts c = PruneOn80And90(mode, {1, 2, 3, 4});
    EXPECT_EQ(c.s80.candidates, c.s90.candidates);
    EXPECT_EQ(c.s80.invalid, c.s90.invalid);  // validity does not depend on the device
    const std::vector<std::string> k90 = Keys(c.v90);
    for (const std::string& k : Keys(c.v80))
      EXPECT_NE(std::find(k90.begin(), k90.end(), k), k90.end()) << k;
  }
}

TEST(Space, NoPruneKeepsEveryValidVariant) {
  const Problem p = MakeProblem(Mode::kPrefill, 256, 32, 8);
  SpaceOptions o;
  o.limits = DeviceLimits::Sm86();
  SpaceStats pruned, all;
  const size_t n_pruned = EnumerateSpace(p, {}, o, &pruned).size();
  o.prune = false;
  const size_t n_all = EnumerateSpace(p, {}, o, &all).size();
  EXPECT_GT(pruned.smem_over_block, 0);
  EXPECT_EQ(all.smem_over_block + all.no_cta_per_sm, 0);
  EXPECT_EQ(n_all, n_pruned + pruned.smem_over_block + pruned.no_cta_per_sm);
}

TEST(Space, DecodeHeadsPerCtaAreDivisorsOfTheGroupUpTo16) {
  struct G {
    int hq, hkv;
    std::set<int> want;
  };
  for (const G& g : {G{64, 2, {1, 2, 4, 8, 16}}, G{15, 5, {1, 3}}, G{8, 8, {1}}, G{40, 8, {1, 5}}}) {
    std::set<int> got;
    for (const Variant& v : EnumerateSpace(MakeProblem(Mode::kDecode, 64, g.hq, g.hkv), {}, {}))
      got.insert(v.schedule().heads_per_cta);
    EXPECT_EQ(got, g.want) << "h" << g.hq << "x" << g.hkv;
  }
}

TEST(Space, PrefillBlockMFollowsThePathsRowTile) {
  for (Probe probe : {Probe::kLearned, Probe::kNone}) {
    const int tile = probe == Probe::kLearned ? 8 : 16;
    std::set<int> mma_rows;
    for (const Variant& v : EnumerateSpace(MakeProblem(Mode::kPrefill, 64, 8, 8), {probe, Affine::kPlain}, {})) {
      const Schedule& s = v.schedule();
      EXPECT_LE(s.block_m, 256);
      EXPECT_EQ(s.block_m % s.warps, 0);
      const int rows = s.block_m / s.warps;
      if (s.path == MathPath::kMma) {
        EXPECT_EQ(rows % tile, 0) << v.Key();
        mma_rows.insert(rows);
      } else {
        EXPECT_EQ(rows & (rows - 1), 0) << v.Key() << ": fma rows per warp are powers of two";
      }
    }
    EXPECT_TRUE(mma_rows.count(3 * tile)) << "odd MMA tile counts are part of the space";
  }
}

TEST(Space, OptionsRestrictTheAxes) {
  SpaceOptions o;
  o.paths = {MathPath::kFma};
  o.splits = {0, 8};
  o.warps = {2};
  std::set<int> splits;
  for (const Variant& v : EnumerateSpace(MakeProblem(Mode::kDecode, 128, 32, 8), {}, o)) {
    EXPECT_EQ(v.schedule().path, MathPath::kFma);
    EXPECT_EQ(v.schedule().warps, 2);
    splits.insert(v.schedule().splits);
  }
  EXPECT_EQ(splits, (std::set<int>{0, 8}));
}

TEST(Space, InvalidProblemYieldsNothingAndSaysWhy) {
  const Problem p = MakeProblem(Mode::kDecode, 96, 32, 8);
  SpaceStats stats;
  EXPECT_TRUE(EnumerateSpace(p, {}, {}, &stats).empty());
  EXPECT_GT(stats.candidates, 0);
  EXPECT_EQ(stats.invalid, stats.candidates);
  EXPECT_EQ(stats.invalid_by_field.at("head_dim"), stats.candidates);
  EXPECT_THAT(stats.ToString(), HasSubstr("head_dim: "));

  EXPECT_EQ(ValidateProblemOnly(p, {}).message(), "head_dim=96: must be 64, 128 or 256");
  EXPECT_TRUE(ValidateProblemOnly(MakeProblem(Mode::kPrefill, 64, 8, 8, 16), {}).ok());  // extend over pages
  EXPECT_THAT(std::string(ValidateProblemOnly(MakeProblem(Mode::kPrefill, 64, 8, 8, 24), {}).message()),
              HasSubstr("page_size=24: must be a power of two"));
  EXPECT_TRUE(ValidateProblemOnly(MakeProblem(Mode::kDecode, 64, 15, 5), {}).ok());
}

TEST(DeviceLimits, Presets) {
  EXPECT_EQ(DeviceLimits::Sm80().max_smem_per_block, 163 * 1024);
  EXPECT_EQ(DeviceLimits::Sm90().max_smem_per_block, 227 * 1024);
  EXPECT_EQ(DeviceLimitsForArch("sm_90a")->arch, "sm_90a");
  EXPECT_EQ(DeviceLimitsForArch("sm_89")->max_threads_per_sm, 1536);
  absl::StatusOr<DeviceLimits> bad = DeviceLimitsForArch("sm_75");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("arch=sm_75"));
}

TEST(DeviceLimits, CtasPerSmFromSharedMemoryAndThreads) {
  // 8 warps (256 threads): at most 8 CTAs by threads; smem decides below that.
  absl::StatusOr<Variant> v =
      Variant::Parse("decode-bf16-d128-h32x8-contig-nowin.learned-plain.mma-n128-w8-s2-splitauto-g4");
  ASSERT_TRUE(v.ok()) << v.status();
  const DeviceLimits h100 = DeviceLimits::Sm90();
  const int per_cta = v->smem_bytes() + 128 + h100.reserved_smem_per_block;  // + s_rq, padded
  EXPECT_EQ(CtasPerSm(*v, h100), std::min(h100.smem_per_sm / per_cta, 2048 / 256));
}

}  // namespace
}  // namespace parallax
