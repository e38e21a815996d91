// Every registered kernel family keeps the contracts the rest of the tree relies on: one
// family per mode, default schedules that are valid, keys that round-trip over the whole
// space, a launch shape and grid that match the variant, and kernels named as it says.
#include <optional>
#include <set>
#include <utility>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "parallax/codegen/generator.h"
#include "parallax/codegen/kernel_family.h"
#include "parallax/codegen/space.h"
#include "parallax/codegen/variant.h"

namespace parallax {
namespace {

Problem ProblemFor(Mode mode) {
  Problem p;
  p.mode = mode;
  p.num_q_heads = 32;
  p.num_kv_heads = 8;
  return p;
}

TEST(FamilyRegistry, EachModeAndPathHasExactlyOneFamilyWithAUniqueName) {
  std::set<std::string> names;
  std::set<Mode> modes;
  std::set<std::pair<Mode, MathPath>> served;
  for (const KernelFamily* f : AllFamilies()) {
    EXPECT_TRUE(names.insert(std::string(f->name())).second) << f->name();
    modes.insert(f->mode());
    for (MathPath path : f->paths())
      EXPECT_TRUE(served.insert({f->mode(), path}).second)
          << "two families for " << ToString(f->mode()) << " on " << ToString(path);
  }
  for (Mode m : {Mode::kDecode, Mode::kPrefill}) {
    EXPECT_EQ(DefaultFamily(m).mode(), m);
    EXPECT_TRUE(modes.count(m)) << ToString(m);
    for (MathPath path : {MathPath::kMma, MathPath::kFma}) {
      const KernelFamily* f = FindFamily(m, path);
      ASSERT_NE(f, nullptr) << ToString(m) << " " << ToString(path);
      EXPECT_EQ(f->mode(), m);
    }
  }
}

// sm_90 devices get the Hopper prefill family by default; others, and CPU-side callers that
// name no device, the portable one. Decode has one family everywhere.
TEST(FamilyRegistry, TheDefaultFamilyFollowsTheDevice) {
  EXPECT_EQ(DefaultFamily(Mode::kPrefill, 90).name(), "prefill_sm90");
  EXPECT_EQ(DefaultFamily(Mode::kPrefill, 80).name(), "prefill");
  EXPECT_EQ(DefaultFamily(Mode::kPrefill, 89).name(), "prefill");
  EXPECT_EQ(DefaultFamily(Mode::kPrefill, 100).name(), "prefill");  // sm_90a code is not forward-compatible
  EXPECT_EQ(DefaultFamily(Mode::kPrefill).name(), "prefill");
  EXPECT_EQ(DefaultFamily(Mode::kDecode, 90).name(), "decode");
  const Problem p = ProblemFor(Mode::kPrefill);
  EXPECT_EQ(DefaultSchedule(p, Algorithm{}, 90).path, MathPath::kWgmma);
  EXPECT_EQ(DefaultSchedule(p, Algorithm{}, 80).path, MathPath::kMma);
  const KernelFamily& hopper = DefaultFamily(Mode::kPrefill, 90);
  EXPECT_STREQ(hopper.ArchSuffix(), "a");
  EXPECT_EQ(hopper.abi(), KernelFamily::Abi::kPrefillTma);
  EXPECT_EQ(DefaultFamily(Mode::kPrefill, 80).abi(), KernelFamily::Abi::kPlain);
  // Extend over a paged cache: the TMA family serves pages of 16 keys and more (a box per
  // page piece); below that Hopper gets the portable family.
  Problem paged = p;
  paged.kv_layout = KvLayout::kPaged;
  paged.page_size = 16;
  EXPECT_TRUE(hopper.Serves(paged));
  EXPECT_EQ(DefaultFamily(paged, 90).name(), "prefill_sm90");
  EXPECT_EQ(DefaultSchedule(paged, Algorithm{}, 90).path, MathPath::kWgmma);
  paged.page_size = 8;
  EXPECT_FALSE(hopper.Serves(paged));
  EXPECT_EQ(DefaultFamily(paged, 90).name(), "prefill");
  EXPECT_EQ(DefaultSchedule(paged, Algorithm{}, 90).path, MathPath::kMma);
  EXPECT_EQ(DefaultFamily(p, 90).name(), "prefill_sm90");
}

TEST(FamilyRegistry, DefaultsAreValidAndCanonical) {
  for (const KernelFamily* f : AllFamilies())
    for (Probe probe : {Probe::kNone, Probe::kLearned})
      for (int d : {64, 128, 256}) {
        Problem p = ProblemFor(f->mode());
        p.head_dim = d;
        const Algorithm a{probe, Affine::kPlain};
        const Schedule s = CanonicalSchedule(p, a, f->Default(p, a));
        absl::StatusOr<Variant> v = Variant::Create(p, a, s);
        ASSERT_TRUE(v.ok()) << f->name() << " d" << d << ": " << v.status();
        EXPECT_EQ(&FamilyOf(*v), f) << v->Key();
        EXPECT_EQ(CanonicalSchedule(p, a, s), s) << v->Key();
      }
}

TEST(FamilyRegistry, EveryVariantOfTheSpaceRoundTripsAndLaunchesAsItSays) {
  for (const KernelFamily* f : AllFamilies()) {
    const Problem p = ProblemFor(f->mode());
    const Algorithm a{Probe::kLearned, Affine::kAmplified};
    SpaceOptions o;
    o.paths = f->paths();
    const std::vector<Variant> space = EnumerateSpace(p, a, o);
    ASSERT_FALSE(space.empty()) << f->name();
    for (const Variant& v : space) {
      absl::StatusOr<Variant> back = Variant::Parse(v.Key());
      ASSERT_TRUE(back.ok()) << back.status();
      EXPECT_EQ(back->schedule(), v.schedule()) << v.Key();
      EXPECT_EQ(&FamilyOf(v), f);
      const LaunchShape shape = GetLaunchShape(v);
      EXPECT_EQ(shape.threads, v.threads());
      EXPECT_EQ(shape.smem_bytes, v.smem_bytes());
      EXPECT_EQ(shape.merge_threads > 0, f->KernelNames().size() > 1) << v.Key();
      const Grid g = f->MainGrid(v, /*batch=*/3, /*seqlen_q=*/1000, /*num_splits=*/5);
      EXPECT_EQ(g.z, 3) << v.Key();
      EXPECT_GT(g.ctas(), 0);
    }
  }
}

TEST(FamilyRegistry, GeneratedSourceNamesTheFamilyAndExportsItsKernels) {
  for (const KernelFamily* f : AllFamilies()) {
    const Problem p = ProblemFor(f->mode());
    for (MathPath path : f->paths()) {
      const Algorithm a{};
      Schedule s = f->Default(p, a);
      s.path = path;
      absl::StatusOr<Variant> v = Variant::Create(p, a, CanonicalSchedule(p, a, s));
      if (!v.ok()) {
        SpaceOptions o;
        o.paths = {path};
        const std::vector<Variant> space = EnumerateSpace(p, a, o);
        ASSERT_FALSE(space.empty()) << f->name();
        v = space.front();
      }
      const std::string src = GenerateSource(*v);
      EXPECT_NE(src.find(absl::StrCat("// family:  codegen/families/", f->name(), "/")), std::string::npos);
      for (const std::string& k : f->KernelNames())
        EXPECT_NE(src.find(absl::StrCat(") ", k, "(const ")), std::string::npos) << v->Key() << " lacks " << k;
    }
  }
}

TEST(FamilyRegistry, FieldsAFamilyDoesNotReadAreRefusedAndNamed) {
  const Problem prefill = ProblemFor(Mode::kPrefill);
  Schedule s = DefaultSchedule(prefill, Algorithm{});
  s.splits = 4;
  absl::StatusOr<Variant> v = Variant::Create(prefill, Algorithm{}, s);
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.status().message(), "splits=4: applies to decode and decode_sm90 only; must be 0 for prefill");
  const Problem decode = ProblemFor(Mode::kDecode);
  s = DefaultSchedule(decode, Algorithm{});
  s.block_m = 64;
  v = Variant::Create(decode, Algorithm{}, s);
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.status().message(), "block_m=64: applies to prefill_sm90 and prefill and prefill_bwd_sm90 and prefill_bwd only; must be 0 for decode");
  // CanonicalSchedule clears them instead.
  EXPECT_TRUE(Variant::Create(decode, Algorithm{}, CanonicalSchedule(decode, Algorithm{}, s)).ok());
}


// The one-launch twin (what an eager run of a split plan launches) is the same schedule with
// the merge fused, and exists only where a second launch does.
TEST(FamilyRegistry, OneLaunchTwinFusesTheMergeOfSplitDecodesOnly) {
  const Problem p = ProblemFor(Mode::kDecode);
  const Algorithm a;
  const Schedule def = DefaultSchedule(p, a);
  absl::StatusOr<Variant> v = Variant::Create(p, a, def);
  ASSERT_TRUE(v.ok()) << v.status();
  ASSERT_FALSE(def.fused_merge);
  std::optional<Variant> twin = OneLaunchTwin(*v);
  ASSERT_TRUE(twin.has_value()) << v->Key();
  EXPECT_TRUE(twin->schedule().fused_merge);
  EXPECT_EQ(twin->Key(), v->Key() + "-fused");
  EXPECT_FALSE(OneLaunchTwin(*twin).has_value()) << "already one launch";

  Schedule one = def;
  one.splits = 1;
  absl::StatusOr<Variant> single = Variant::Create(p, a, one);
  ASSERT_TRUE(single.ok()) << single.status();
  EXPECT_FALSE(OneLaunchTwin(*single).has_value()) << single->Key();

  const Problem pp = ProblemFor(Mode::kPrefill);
  absl::StatusOr<Variant> prefill = Variant::Create(pp, a, DefaultSchedule(pp, a));
  ASSERT_TRUE(prefill.ok()) << prefill.status();
  EXPECT_FALSE(OneLaunchTwin(*prefill).has_value()) << prefill->Key();
}

}  // namespace
}  // namespace parallax
