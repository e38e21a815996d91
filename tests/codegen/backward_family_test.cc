// The prefill backward family (codegen/families/prefill_bwd): its keys, its refusals, and
// generated sources that NVRTC compiles for sm_80 and sm_90 across the axes the kernels
// branch on (probe, affine, window, head dim, dtype). Needs libnvrtc, no GPU.
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "parallax/codegen/generator.h"
#include "parallax/codegen/kernel_family.h"
#include "parallax/codegen/space.h"
#include "parallax/codegen/variant.h"
#include "parallax/codegen/variant_json.h"
#include "parallax/runtime/nvrtc_compiler.h"

namespace parallax {
namespace {

Problem BwdProblem(int head_dim, DType dtype = DType::kBF16, bool window = false) {
  Problem p;
  p.mode = Mode::kBackward;
  p.dtype = dtype;
  p.head_dim = head_dim;
  p.num_q_heads = 16;
  p.num_kv_heads = 4;
  p.window = window;
  return p;
}

TEST(BackwardFamily, KeysRoundTripWithTheBwdModeToken) {
  const Problem p = BwdProblem(128);
  const Algorithm a{Probe::kLearned, Affine::kPlain};
  absl::StatusOr<Variant> v = Variant::Create(p, a, DefaultSchedule(p, a));
  ASSERT_TRUE(v.ok()) << v.status();
  // The default reduces dQ/dR by bulk rows (measured faster than atomic; docs/backward.md).
  EXPECT_EQ(v->Key(), "bwd-bf16-d128-h16x4-contig-nowin.learned-plain.mma-m32-n64-w4-s1-bulk");
  EXPECT_EQ(v->schedule().dq_reduce, Schedule::DqReduce::kBulk);
  EXPECT_EQ(FamilyOf(*v).name(), "prefill_bwd");
  absl::StatusOr<Variant> back = Variant::Parse(v->Key());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, *v);
  absl::StatusOr<std::pair<Problem, Algorithm>> pk = ParseProblemKey("bwd-fp16-d64-h8x8-contig-win.none-plain");
  ASSERT_TRUE(pk.ok()) << pk.status();
  EXPECT_EQ(pk->first.mode, Mode::kBackward);
  EXPECT_TRUE(pk->first.window);
  EXPECT_FALSE(Variant::Parse("backward-bf16-d128-h16x4-contig-nowin.learned-plain.mma-m32-n64-w4-s1").ok());
  EXPECT_FALSE(Variant::Parse("bwd-bf16-d128-h16x4-contig-nowin.learned-plain.fma-m32-n64-w4-s1").ok())
      << "no fma backward";
  // The dQ reduction: a trailing token when it is not atomic (which has none), the default's
  // bulk included; a key without one stays atomic.
  absl::StatusOr<Variant> atomic = Variant::Parse("bwd-bf16-d128-h16x4-contig-nowin.learned-plain.mma-m32-n64-w4-s1");
  ASSERT_TRUE(atomic.ok()) << atomic.status();
  EXPECT_EQ(atomic->schedule().dq_reduce, Schedule::DqReduce::kAtomic);
  EXPECT_EQ(atomic->Key(), "bwd-bf16-d128-h16x4-contig-nowin.learned-plain.mma-m32-n64-w4-s1");
  for (const char* tail : {"-bulk", "-det"}) {
    const std::string key = absl::StrCat("bwd-bf16-d128-h16x4-contig-nowin.learned-plain.mma-m32-n64-w4-s2", tail);
    absl::StatusOr<Variant> r = Variant::Parse(key);
    ASSERT_TRUE(r.ok()) << key << ": " << r.status();
    EXPECT_EQ(r->Key(), key);
    EXPECT_EQ(r->schedule().dq_reduce,
              tail[1] == 'b' ? Schedule::DqReduce::kBulk : Schedule::DqReduce::kDeterministic);
    const nlohmann::json j = ToJson(*r);
    EXPECT_EQ(j["schedule"]["dq_reduce"], tail + 1);
    nlohmann::json fields = j;
    fields.erase("key");
    fields.erase("hash");
    absl::StatusOr<Variant> back = VariantFromJson(fields);
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(back->Key(), key);
  }
  absl::StatusOr<Variant> bad = Variant::Parse("bwd-bf16-d128-h16x4-contig-nowin.learned-plain.mma-m32-n64-w4-s2-fast");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("expected bulk or det"), std::string::npos) << bad.status();
  // Other families refuse the field.
  Schedule dec;
  dec.dq_reduce = Schedule::DqReduce::kBulk;
  Problem dp = BwdProblem(128);
  dp.mode = Mode::kDecode;
  absl::StatusOr<Variant> other = Variant::Create(dp, Algorithm{Probe::kLearned, Affine::kPlain}, dec);
  ASSERT_FALSE(other.ok());
  EXPECT_NE(other.status().message().find("dq_reduce"), std::string::npos) << other.status();
}

TEST(BackwardFamily, RefusalsNameTheFieldAndTheRule) {
  const Algorithm a{Probe::kLearned, Affine::kPlain};
  Problem paged = BwdProblem(128);
  paged.kv_layout = KvLayout::kPaged;
  paged.page_size = 16;
  Schedule s = DefaultSchedule(BwdProblem(128), a);
  absl::StatusOr<Variant> v = Variant::Create(paged, a, s);
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.status().message(),
            "kv_layout=paged: the backward reads contiguous K/V only (paged KV has no backward)");

  const Problem p = BwdProblem(128);
  Schedule bad = s;
  bad.block_n = 128;
  v = Variant::Create(p, a, bad);
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.status().message(), "block_n=128: must be 64: 16 keys per warp, 1 warp(s) per 16 keys at head_dim 128");
  bad = s;
  bad.block_m = 64;  // 3 x 32 score registers + 128 dK/dV
  v = Variant::Create(p, a, bad);
  ASSERT_FALSE(v.ok());
  EXPECT_NE(v.status().message().find("block_m=64: with head_dim 128"), std::string::npos) << v.status();
  bad = s;
  bad.stages = 3;
  v = Variant::Create(p, a, bad);
  ASSERT_FALSE(v.ok());
  EXPECT_NE(v.status().message().find("stages=3: must be 1 or 2"), std::string::npos) << v.status();
  // Double-buffered query blocks: a second copy of Q, R, dO and the coefficients.
  Schedule two = s;
  two.stages = 2;
  absl::StatusOr<Variant> one_v = Variant::Create(p, a, s), two_v = Variant::Create(p, a, two);
  ASSERT_TRUE(one_v.ok() && two_v.ok()) << two_v.status();
  EXPECT_EQ(two_v->smem_bytes() - one_v->smem_bytes(), 3 * s.block_m * 128 * 2 + 5 * s.block_m * 4);
  EXPECT_EQ(two_v->Key(), "bwd-bf16-d128-h16x4-contig-nowin.learned-plain.mma-m32-n64-w4-s2-bulk");
  // Softmax needs fewer score tiles: block_m 64 fits at head_dim 64 either way.
  Schedule wide = DefaultSchedule(BwdProblem(64), a);
  EXPECT_EQ(wide.block_m, 64);
  EXPECT_TRUE(Variant::Create(BwdProblem(64), a, wide).ok());
}

TEST(BackwardFamily, HeadDim256SplitsEachBandOverTwoWarps) {
  const Problem p = BwdProblem(256);
  const Algorithm a{Probe::kLearned, Affine::kAmplified};
  const Schedule s = DefaultSchedule(p, a);
  EXPECT_EQ(s.warps, 8);
  EXPECT_EQ(s.block_n, 64);
  absl::StatusOr<Variant> v = Variant::Create(p, a, s);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_LE(v->smem_bytes(), 227 * 1024);
  const LaunchShape shape = GetLaunchShape(*v);
  EXPECT_EQ(shape.threads, 256);
  EXPECT_GT(shape.merge_threads, 0);
  const Grid g = FamilyOf(*v).MainGrid(*v, /*batch=*/3, /*seqlen_k=*/130, 1);
  EXPECT_EQ(g.x, 3);  // 130 keys in blocks of 64
  EXPECT_EQ(g.y, 4);  // kv heads
  EXPECT_EQ(g.z, 3);
}

TEST(BackwardFamily, TheSpaceIsSmallAndValid) {
  for (int d : {64, 128, 256}) {
    const std::vector<Variant> space = EnumerateSpace(BwdProblem(d), Algorithm{Probe::kLearned, Affine::kPlain}, {});
    EXPECT_GE(space.size(), 2u) << d;
    std::set<int> stages, reduce;
    for (const Variant& v : space) {
      stages.insert(v.schedule().stages);
      reduce.insert(static_cast<int>(v.schedule().dq_reduce));
    }
    EXPECT_EQ(stages, (std::set<int>{1, 2})) << d;
    EXPECT_EQ(reduce, (std::set<int>{0, 1})) << d << ": atomic and bulk searched, det only when asked for";
  }
}

// ---- NVRTC: the generated source compiles, exports its three kernels, and reports spills --
using Param = std::tuple<std::string, std::string>;  // key, arch

std::vector<Param> CompileSet() {
  std::vector<Param> out;
  int rotate = 0;
  for (int d : {64, 128, 256})
    for (Algorithm a : {Algorithm{Probe::kNone, Affine::kPlain}, Algorithm{Probe::kLearned, Affine::kPlain},
                        Algorithm{Probe::kLearned, Affine::kAmplified}})
      for (bool window : {false, true}) {
        const Problem p = BwdProblem(d, rotate++ % 2 ? DType::kFP16 : DType::kBF16, window);
        absl::StatusOr<Variant> v = Variant::Create(p, a, DefaultSchedule(p, a));
        if (!v.ok()) continue;  // the test below counts them
        for (const char* arch : {"sm_80", "sm_90"}) out.emplace_back(v->Key(), arch);
      }
  // Double-buffered, with the atomic and ordered (det) dQ reductions (the defaults above are
  // bulk): the sm_90 forms hold the bulk-copy PTX, the sm_80 forms their red.add fallback.
  for (int d : {64, 128, 256})
    for (Schedule::DqReduce r : {Schedule::DqReduce::kAtomic, Schedule::DqReduce::kDeterministic}) {
      const Problem p = BwdProblem(d, DType::kBF16, r == Schedule::DqReduce::kDeterministic);
      const Algorithm a{Probe::kLearned, Affine::kPlain};
      Schedule s = DefaultSchedule(p, a);
      s.stages = 2;
      s.dq_reduce = r;
      absl::StatusOr<Variant> v = Variant::Create(p, a, s);
      if (!v.ok()) {  // head_dim 256: two query blocks and the staged rows exceed 227 KiB
        s.stages = 1;
        v = Variant::Create(p, a, s);
      }
      if (!v.ok()) continue;
      for (const char* arch : {"sm_80", "sm_90"}) out.emplace_back(v->Key(), arch);
    }
  return out;
}

TEST(BackwardFamily, TheCompileSetCoversEveryHeadDim) { EXPECT_EQ(CompileSet().size(), 3u * 3 * 2 * 2 + 3 * 2 * 2); }

class BackwardCompile : public ::testing::TestWithParam<Param> {};

TEST_P(BackwardCompile, CompilesAndExportsItsKernels) {
  const auto& [key, arch] = GetParam();
  absl::StatusOr<Variant> v = Variant::Parse(key);
  ASSERT_TRUE(v.ok()) << v.status();
  CompileOptions o;
  o.arch = arch;
  o.warnings_as_errors = true;  // for CompileToPtx: any compiler message fails
  absl::StatusOr<std::string> ptx = CompileToPtx(GenerateSource(*v), key + ".cu", o);
  ASSERT_TRUE(ptx.ok()) << ptx.status();
  absl::StatusOr<CompileResult> r = CompileCuda(GenerateSource(*v), key + ".cu", o);
  ASSERT_TRUE(r.ok()) << r.status();
  std::vector<std::string> names;
  for (const KernelResources& k : r->kernels) {
    names.push_back(k.name);
    // Spills cost speed, not correctness: reported here (the first kernels are not tuned yet).
    std::printf("[resources] %s %s %s: %d registers, spills %d/%d B\n", arch.c_str(), key.c_str(), k.name.c_str(),
                k.registers, k.spill_store_bytes, k.spill_load_bytes);
  }
  for (const std::string& want : FamilyOf(*v).KernelNames())
    EXPECT_NE(std::find(names.begin(), names.end(), want), names.end()) << want;
}

INSTANTIATE_TEST_SUITE_P(Variants, BackwardCompile, ::testing::ValuesIn(CompileSet()),
                         [](const ::testing::TestParamInfo<Param>& i) {
                           std::string n = std::get<0>(i.param) + "_" + std::get<1>(i.param);
                           for (char& c : n)
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           return n;
                         });

}  // namespace
}  // namespace parallax
