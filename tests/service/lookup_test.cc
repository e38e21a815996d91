// GetBestConfig (exact / nearest / default), ListConfigs and request validation.
#include <functional>

#include "absl/strings/match.h"

#include "parallax/codegen/kernel_family.h"
#include "parallax/runtime/nvrtc_compiler.h"
#include "parallax/service/buckets.h"
#include "parallax/service/proto_convert.h"
#include "parallax/service/validate.h"
#include "server_fixture.h"

namespace parallax::service::testing {
namespace {

// Stores a best config for `p` (its problem key and bucket) on fake device 0.
void Seed(cache::Store& store, const v1::Problem& p, const std::string& variant_key, double median_us,
          int generator_version = kGeneratorVersion) {
  absl::StatusOr<ProblemSpec> spec = ValidateProblem(p, "problem");
  ASSERT_TRUE(spec.ok()) << spec.status();
  FakeBackend backend(nullptr, {});
  absl::StatusOr<cache::DeviceInfo> dev = backend.device(0);
  ASSERT_TRUE(dev.ok());
  ASSERT_TRUE(store.UpsertDevice(*dev).ok());
  cache::BestConfig c;
  c.device_fingerprint = dev->fingerprint;
  c.problem_key = spec->problem_key;
  c.bucket = spec->bucket;
  c.variant_key = variant_key.empty() ? FakeBackend::BestKeyFor(*spec) : variant_key;
  c.median_us = median_us;
  c.generator_version = generator_version;
  c.nvrtc_version = 13000;
  ASSERT_TRUE(store.SetBestConfig(c).ok());
}

std::string DefaultKey(const v1::Problem& p) { return ValidateProblem(p, "problem")->default_variant_key; }
// What the runtime on a device of compute capability sm runs untuned, straight from codegen
// (DefaultSchedule(p, a, sm), as Runtime::TunedOrDefault makes it).
std::string RuntimeDefaultKey(const v1::Problem& p, int sm) {
  absl::StatusOr<ProblemSpec> spec = ValidateProblem(p, "problem");
  if (!spec.ok()) return "invalid problem: " + std::string(spec.status().message());
  absl::StatusOr<Variant> v =
      Variant::Create(spec->problem, spec->algorithm, DefaultSchedule(spec->problem, spec->algorithm, sm));
  return v.ok() ? v->Key() : "no default: " + std::string(v.status().message());
}
// Lookup(p) from fake device 0 with another compute capability.
v1::GetBestConfigRequest LookupOn(const v1::Problem& p, int cc_major, int cc_minor) {
  v1::GetBestConfigRequest r = ServerTest::Lookup(p);
  r.mutable_device()->set_cc_major(cc_major);
  r.mutable_device()->set_cc_minor(cc_minor);
  return r;
}
std::string TunedKey(const v1::Problem& p) { return FakeBackend::BestKeyFor(*ValidateProblem(p, "problem")); }

TEST(Buckets, SameKeysAsTheRuntime) {
  absl::StatusOr<ProblemSpec> spec = ValidateProblem(ServerTest::DecodeProblem(3, 1025), "problem");
  ASSERT_TRUE(spec.ok());
  EXPECT_EQ(spec->bucket, "b4-l2048");
  EXPECT_EQ(spec->bucket, ToString(BucketFor(3, 1025)));
  EXPECT_EQ(spec->problem_key, ProblemKey(spec->problem, spec->algorithm));
  EXPECT_EQ(*ParseNvrtcVersion("13.0"), 13000);
  EXPECT_FALSE(ParseNvrtcVersion("13").ok());
}

// Prefill problems bucket on query tokens over the batch and context length (bucket.h).
TEST(Buckets, PrefillKeysAsTheRuntime) {
  absl::StatusOr<ProblemSpec> full = ValidateProblem(ServerTest::PrefillProblem(4, 3000), "problem");
  ASSERT_TRUE(full.ok()) << full.status();
  EXPECT_EQ(full->bucket, "t16384-l4096");
  EXPECT_EQ(full->shape_bucket, PrefillBucketFor(4, 3000, 3000));
  EXPECT_EQ(full->context_len, 3000);
  EXPECT_EQ(full->problem_key, "prefill-bf16-d128-h32x8-contig-nowin.learned-plain");
  absl::StatusOr<ProblemSpec> chunk = ValidateProblem(ServerTest::PrefillProblem(1, 512, 8000), "problem");
  ASSERT_TRUE(chunk.ok()) << chunk.status();
  EXPECT_EQ(chunk->bucket, "t512-l8192");
  // Through the proto and back: the same spec.
  absl::StatusOr<ProblemSpec> again = ValidateProblem(ToProto(*chunk), "problem");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->bucket, chunk->bucket);
  EXPECT_EQ(again->context_len, 8000);
}

// The backward of prefill problem p (MODE_BACKWARD: "bwd-..." keys, prefill's buckets).
v1::Problem Backward(v1::Problem p) {
  p.set_mode(v1::MODE_BACKWARD);
  return p;
}

// MODE_BACKWARD both ways: the proto's enum and the IR's mode map one to one, and a backward
// problem validates to the bwd problem key on prefill's buckets and survives the proto round
// trip; its default is the prefill_bwd family's on every device.
TEST(Buckets, BackwardKeysAsTheRuntime) {
  for (Mode m : {Mode::kDecode, Mode::kPrefill, Mode::kBackward}) {
    absl::StatusOr<Mode> back = ModeFromProto(ModeToProto(m));
    ASSERT_TRUE(back.ok()) << ToString(m) << ": " << back.status();
    EXPECT_EQ(*back, m);
  }
  EXPECT_EQ(ModeToProto(Mode::kBackward), v1::MODE_BACKWARD);
  EXPECT_EQ(static_cast<int>(v1::MODE_BACKWARD), 3);  // appended: the wire value never changes
  for (v1::Mode bad : {v1::MODE_UNSPECIFIED, static_cast<v1::Mode>(4), static_cast<v1::Mode>(-1)}) {
    absl::StatusOr<Mode> m = ModeFromProto(bad);
    EXPECT_TRUE(absl::IsInvalidArgument(m.status())) << bad;
    EXPECT_NE(m.status().message().find("MODE_BACKWARD"), absl::string_view::npos) << m.status();
  }

  absl::StatusOr<ProblemSpec> chunk = ValidateProblem(Backward(ServerTest::PrefillProblem(1, 512, 8000)), "problem");
  ASSERT_TRUE(chunk.ok()) << chunk.status();
  EXPECT_EQ(chunk->problem.mode, Mode::kBackward);
  EXPECT_EQ(chunk->problem_key, "bwd-bf16-d128-h32x8-contig-nowin.learned-plain");
  EXPECT_EQ(chunk->bucket, "t512-l8192");
  EXPECT_EQ(chunk->shape_bucket, PrefillBucketFor(1, 512, 8000));
  EXPECT_TRUE(absl::StartsWith(chunk->default_variant_key, "bwd-bf16-d128-h32x8-contig-nowin.learned-plain.mma-"))
      << chunk->default_variant_key;
  const v1::Problem wire = ToProto(*chunk);
  EXPECT_EQ(wire.mode(), v1::MODE_BACKWARD);
  absl::StatusOr<ProblemSpec> again = ValidateProblem(wire, "problem");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->problem, chunk->problem);
  EXPECT_EQ(again->algorithm, chunk->algorithm);
  EXPECT_EQ(again->bucket, chunk->bucket);
  EXPECT_EQ(again->context_len, 8000);
  EXPECT_EQ(ProblemToProto(chunk->problem, chunk->algorithm, 1, 512, 8000).mode(), v1::MODE_BACKWARD);
  for (int sm : {0, 80, 100}) EXPECT_EQ(DeviceDefaultKey(*chunk, sm), chunk->default_variant_key) << "sm " << sm;
  // sm_90 gets the Hopper backward family.
  EXPECT_TRUE(absl::StartsWith(DeviceDefaultKey(*chunk, 90), "bwd-bf16-d128-h32x8-contig-nowin.learned-plain.wgmma-"))
      << DeviceDefaultKey(*chunk, 90);

  // Refused with the field named: a context shorter than the queries, paged K/V.
  absl::StatusOr<ProblemSpec> short_ctx = ValidateProblem(Backward(ServerTest::PrefillProblem(1, 4096, 100)), "problem");
  EXPECT_TRUE(absl::IsInvalidArgument(short_ctx.status()));
  EXPECT_NE(short_ctx.status().message().find("problem.context_len=100: bwd"), absl::string_view::npos)
      << short_ctx.status();
  v1::Problem paged = Backward(ServerTest::PrefillProblem());
  paged.set_kv_layout(v1::KV_LAYOUT_PAGED);
  paged.set_page_size(16);
  absl::StatusOr<ProblemSpec> p = ValidateProblem(paged, "problem");
  EXPECT_TRUE(absl::IsInvalidArgument(p.status()));
  EXPECT_TRUE(absl::StartsWith(p.status().message(), "problem.")) << p.status();
  EXPECT_NE(p.status().message().find("paged"), absl::string_view::npos) << p.status();
}

// The default follows the device's compute capability as the runtime's does: on sm_90
// prefill the wgmma family's, elsewhere (and for decode) the portable one ValidateProblem
// made; a GPU no family runs on gets the portable one instead of aborting in DefaultFamily.
TEST(Buckets, DeviceDefaultKeyFollowsTheComputeCapability) {
  absl::StatusOr<ProblemSpec> prefill = ValidateProblem(ServerTest::PrefillProblem(1, 4096), "problem");
  ASSERT_TRUE(prefill.ok()) << prefill.status();
  const std::string hopper = DeviceDefaultKey(*prefill, 90);
  EXPECT_TRUE(absl::StrContains(hopper, ".wgmma-")) << hopper;
  EXPECT_EQ(hopper, RuntimeDefaultKey(ServerTest::PrefillProblem(), 90));
  EXPECT_EQ(hopper, DefaultVariant(prefill->problem, prefill->algorithm, 90)->Key());
  EXPECT_TRUE(absl::StrContains(prefill->default_variant_key, ".mma-")) << prefill->default_variant_key;
  EXPECT_EQ(prefill->default_variant_key, RuntimeDefaultKey(ServerTest::PrefillProblem(), 0));
  for (int sm : {80, 86, 89, 100, 120}) {
    EXPECT_EQ(DeviceDefaultKey(*prefill, sm), RuntimeDefaultKey(ServerTest::PrefillProblem(), sm)) << "sm " << sm;
    EXPECT_EQ(DeviceDefaultKey(*prefill, sm), prefill->default_variant_key) << "sm " << sm;
  }
  for (int sm : {0, 10, 75}) EXPECT_EQ(DeviceDefaultKey(*prefill, sm), prefill->default_variant_key) << "sm " << sm;
  EXPECT_EQ(DefaultVariant(prefill->problem, prefill->algorithm, 75)->Key(), prefill->default_variant_key);

  absl::StatusOr<ProblemSpec> decode = ValidateProblem(ServerTest::DecodeProblem(), "problem");
  ASSERT_TRUE(decode.ok()) << decode.status();
  for (int sm : {0, 75, 80, 89, 90, 100}) {
    EXPECT_EQ(DeviceDefaultKey(*decode, sm), decode->default_variant_key) << "sm " << sm;
    EXPECT_EQ(DeviceDefaultKey(*decode, sm), RuntimeDefaultKey(ServerTest::DecodeProblem(), sm == 75 ? 0 : sm));
  }
}

class LookupTest : public ServerTest {};

// Nothing tuned: a prefill problem asked from an sm_90 GPU (H100/H200) gets the wgmma
// family's default, which that GPU's runtime runs, not the portable mma.sync one; from an
// sm_80 GPU the portable one. Decode's default is the same on both.
TEST_F(LookupTest, PrefillDefaultIsTheDevicesOwn) {
  StartServer();
  auto c = NewClient();
  const v1::Problem prefill = PrefillProblem(1, 4096);
  absl::StatusOr<v1::GetBestConfigResponse> hopper = c->GetBestConfig(LookupOn(prefill, 9, 0));
  ASSERT_TRUE(hopper.ok()) << hopper.status();
  EXPECT_EQ(hopper->match(), v1::MATCH_DEFAULT);
  EXPECT_TRUE(absl::StrContains(hopper->variant_key(), ".wgmma-")) << hopper->variant_key();
  EXPECT_EQ(hopper->variant_key(), RuntimeDefaultKey(prefill, 90));
  EXPECT_TRUE(Variant::Parse(hopper->variant_key()).ok());
  EXPECT_EQ(hopper->bucket(), "");
  EXPECT_EQ(hopper->median_us(), 0);

  absl::StatusOr<v1::GetBestConfigResponse> ampere = c->GetBestConfig(LookupOn(prefill, 8, 0));
  ASSERT_TRUE(ampere.ok()) << ampere.status();
  EXPECT_EQ(ampere->match(), v1::MATCH_DEFAULT);
  EXPECT_TRUE(absl::StrContains(ampere->variant_key(), ".mma-")) << ampere->variant_key();
  EXPECT_EQ(ampere->variant_key(), RuntimeDefaultKey(prefill, 80));
  EXPECT_EQ(ampere->variant_key(), DefaultKey(prefill));
  EXPECT_NE(ampere->variant_key(), hopper->variant_key());

  const v1::Problem decode = DecodeProblem(4, 4096);
  absl::StatusOr<v1::GetBestConfigResponse> decode90 = c->GetBestConfig(LookupOn(decode, 9, 0));
  absl::StatusOr<v1::GetBestConfigResponse> decode80 = c->GetBestConfig(LookupOn(decode, 8, 0));
  ASSERT_TRUE(decode90.ok()) << decode90.status();
  ASSERT_TRUE(decode80.ok()) << decode80.status();
  EXPECT_EQ(decode90->match(), v1::MATCH_DEFAULT);
  EXPECT_EQ(decode80->match(), v1::MATCH_DEFAULT);
  EXPECT_EQ(decode90->variant_key(), DefaultKey(decode));
  EXPECT_EQ(decode80->variant_key(), DefaultKey(decode));
  EXPECT_EQ(decode90->variant_key(), RuntimeDefaultKey(decode, 90));
}

// Every prefill member and layout the sm_90 family has a default for answers it from an sm_90
// GPU; GPUs of other compute capabilities (sm_89, sm_100, and sm_75, which no family runs on
// and which must not bring the server down) get the portable default.
TEST_F(LookupTest, PrefillDefaultPerComputeCapability) {
  StartServer();
  auto c = NewClient();
  std::vector<v1::Problem> problems;
  for (int head_dim : {64, 128, 256})
    for (bool window : {false, true})
      for (v1::Probe probe : {v1::PROBE_NONE, v1::PROBE_LEARNED}) {
        v1::Problem p = PrefillProblem(2, 1000, 3000);
        p.set_head_dim(head_dim);
        p.set_window(window);
        p.set_probe(probe);
        problems.push_back(p);
      }
  for (const v1::Problem& p : problems) {
    SCOPED_TRACE(p.ShortDebugString());
    absl::StatusOr<v1::GetBestConfigResponse> r = c->GetBestConfig(LookupOn(p, 9, 0));
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->match(), v1::MATCH_DEFAULT);
    EXPECT_EQ(r->variant_key(), RuntimeDefaultKey(p, 90));
    EXPECT_TRUE(absl::StrContains(r->variant_key(), ".wgmma-")) << r->variant_key();
    for (auto [major, minor] : {std::pair{8, 9}, std::pair{10, 0}, std::pair{7, 5}}) {
      absl::StatusOr<v1::GetBestConfigResponse> other = c->GetBestConfig(LookupOn(p, major, minor));
      ASSERT_TRUE(other.ok()) << other.status();
      EXPECT_EQ(other->match(), v1::MATCH_DEFAULT);
      EXPECT_EQ(other->variant_key(), DefaultKey(p)) << "cc " << major << "." << minor;
    }
  }
}

// A tuned row still wins over the device's default; the default only answers where nothing
// tuned applies.
TEST_F(LookupTest, TunedPrefillRowsStillWinOnSm90) {
  Seed(store(), PrefillProblem(1, 4096), "", 10);  // fake device 0 is cc 9.0
  StartServer();
  auto c = NewClient();
  absl::StatusOr<v1::GetBestConfigResponse> r = c->GetBestConfig(Lookup(PrefillProblem(1, 4096)));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->match(), v1::MATCH_EXACT);
  EXPECT_EQ(r->variant_key(), TunedKey(PrefillProblem()));
  absl::StatusOr<v1::GetBestConfigResponse> other_gpu = c->GetBestConfig(Lookup(PrefillProblem(1, 4096), 1));
  ASSERT_TRUE(other_gpu.ok()) << other_gpu.status();
  EXPECT_EQ(other_gpu->match(), v1::MATCH_DEFAULT);
  EXPECT_EQ(other_gpu->variant_key(), RuntimeDefaultKey(PrefillProblem(), 90));
}

TEST_F(LookupTest, PrefillExactThenNearestThenDefault) {
  Seed(store(), PrefillProblem(1, 4096), "", 10);         // t4096-l4096
  Seed(store(), PrefillProblem(8, 16384), "", 20);        // t131072-l16384
  StartServer();
  auto c = NewClient();
  absl::StatusOr<v1::GetBestConfigResponse> exact = c->GetBestConfig(Lookup(PrefillProblem(1, 3000)));
  ASSERT_TRUE(exact.ok()) << exact.status();
  EXPECT_EQ(exact->match(), v1::MATCH_EXACT);
  EXPECT_EQ(exact->bucket(), "t4096-l4096");
  EXPECT_EQ(exact->variant_key(), TunedKey(PrefillProblem()));
  EXPECT_TRUE(absl::StartsWith(exact->variant_key(), "prefill-"));
  // A 512-query chunk at the end of 8192 keys: 4 octaves from t4096-l4096, 9 from the other.
  absl::StatusOr<v1::GetBestConfigResponse> near = c->GetBestConfig(Lookup(PrefillProblem(1, 512, 8192)));
  ASSERT_TRUE(near.ok()) << near.status();
  EXPECT_EQ(near->match(), v1::MATCH_NEAREST_BUCKET);
  EXPECT_EQ(near->requested_bucket(), "t512-l8192");
  EXPECT_EQ(near->bucket(), "t4096-l4096");
  absl::StatusOr<v1::GetBestConfigResponse> far = c->GetBestConfig(Lookup(PrefillProblem(4, 16384)));
  ASSERT_TRUE(far.ok());
  EXPECT_EQ(far->bucket(), "t131072-l16384");
  // The decode problem with the same heads has nothing tuned: the mode is in the problem key.
  absl::StatusOr<v1::GetBestConfigResponse> decode = c->GetBestConfig(Lookup(DecodeProblem(1, 4096)));
  ASSERT_TRUE(decode.ok());
  EXPECT_EQ(decode->match(), v1::MATCH_DEFAULT);
  EXPECT_EQ(decode->variant_key(), DefaultKey(DecodeProblem()));
}

// A backward lookup is accepted and answered like prefill's: exact, nearest bucket, then the
// bwd default; the forward of the same shape has nothing tuned (the mode is in the key).
TEST_F(LookupTest, BackwardExactThenNearestThenDefault) {
  absl::StatusOr<ProblemSpec> spec = ValidateProblem(Backward(PrefillProblem(1, 4096)), "problem");
  ASSERT_TRUE(spec.ok()) << spec.status();
  Schedule s = DefaultSchedule(spec->problem, spec->algorithm);
  s.block_m = 16;  // a schedule other than the default's
  absl::StatusOr<Variant> tuned = Variant::Create(spec->problem, spec->algorithm, s);
  ASSERT_TRUE(tuned.ok()) << tuned.status();
  ASSERT_NE(tuned->Key(), spec->default_variant_key);
  Seed(store(), Backward(PrefillProblem(1, 4096)), tuned->Key(), 10);  // t4096-l4096
  StartServer();
  auto c = NewClient();
  absl::StatusOr<v1::GetBestConfigResponse> exact = c->GetBestConfig(Lookup(Backward(PrefillProblem(1, 3000))));
  ASSERT_TRUE(exact.ok()) << exact.status();
  EXPECT_EQ(exact->match(), v1::MATCH_EXACT);
  EXPECT_EQ(exact->bucket(), "t4096-l4096");
  EXPECT_EQ(exact->variant_key(), tuned->Key());
  EXPECT_EQ(exact->problem_key(), "bwd-bf16-d128-h32x8-contig-nowin.learned-plain");
  absl::StatusOr<v1::GetBestConfigResponse> near = c->GetBestConfig(Lookup(Backward(PrefillProblem(1, 512, 8192))));
  ASSERT_TRUE(near.ok()) << near.status();
  EXPECT_EQ(near->match(), v1::MATCH_NEAREST_BUCKET);
  EXPECT_EQ(near->variant_key(), tuned->Key());
  absl::StatusOr<v1::GetBestConfigResponse> fwd = c->GetBestConfig(Lookup(PrefillProblem(1, 4096)));
  ASSERT_TRUE(fwd.ok()) << fwd.status();
  EXPECT_EQ(fwd->match(), v1::MATCH_DEFAULT);
  EXPECT_TRUE(absl::StartsWith(fwd->variant_key(), "prefill-")) << fwd->variant_key();
  v1::Problem other = Backward(PrefillProblem(1, 4096));
  other.set_probe(v1::PROBE_NONE);  // another problem key: nothing tuned
  absl::StatusOr<v1::GetBestConfigResponse> def = c->GetBestConfig(Lookup(other));
  ASSERT_TRUE(def.ok()) << def.status();
  EXPECT_EQ(def->match(), v1::MATCH_DEFAULT);
  // The server's device is an H200: the Hopper backward family's default.
  EXPECT_TRUE(absl::StartsWith(def->variant_key(), "bwd-bf16-d128-h32x8-contig-nowin.none-plain.wgmma-"))
      << def->variant_key();
}

TEST_F(LookupTest, PrefillStaleOrGarbageRowsAreNeverServed) {
  Seed(store(), PrefillProblem(1, 4096), "", 10, kGeneratorVersion + 1);  // other generator
  Seed(store(), PrefillProblem(2, 4096), "not-a-variant-key", 5);          // garbage
  Seed(store(), PrefillProblem(4, 4096), TunedKey(PrefillProblem()) + "-testfault", 5);
  StartServer();
  auto c = NewClient();
  absl::StatusOr<v1::GetBestConfigResponse> r = c->GetBestConfig(Lookup(PrefillProblem(1, 4096)));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->match(), v1::MATCH_DEFAULT);
  EXPECT_EQ(r->variant_key(), RuntimeDefaultKey(PrefillProblem(), 90));  // fake device 0 is cc 9.0
}

TEST_F(LookupTest, DefaultWhenNothingIsTuned) {
  StartServer();
  auto c = NewClient();
  absl::StatusOr<v1::GetBestConfigResponse> r = c->GetBestConfig(Lookup(DecodeProblem(3, 5000)));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->match(), v1::MATCH_DEFAULT);
  EXPECT_EQ(r->variant_key(), DefaultKey(DecodeProblem()));
  EXPECT_TRUE(Variant::Parse(r->variant_key()).ok());
  EXPECT_EQ(r->requested_bucket(), "b4-l8192");
  EXPECT_EQ(r->problem_key(), "decode-bf16-d128-h32x8-contig-nowin.learned-plain");
}

TEST_F(LookupTest, ExactThenNearestThenDefault) {
  Seed(store(), DecodeProblem(4, 4096), "", 10);
  Seed(store(), DecodeProblem(64, 65536), "", 20);
  StartServer();
  auto c = NewClient();

  absl::StatusOr<v1::GetBestConfigResponse> exact = c->GetBestConfig(Lookup(DecodeProblem(3, 3000)));
  ASSERT_TRUE(exact.ok()) << exact.status();
  EXPECT_EQ(exact->match(), v1::MATCH_EXACT);
  EXPECT_EQ(exact->bucket(), "b4-l4096");
  EXPECT_EQ(exact->variant_key(), TunedKey(DecodeProblem()));
  EXPECT_DOUBLE_EQ(exact->median_us(), 10);

  // b8-l8192 is 2 steps from b4-l4096 and 7 from b64-l65536.
  absl::StatusOr<v1::GetBestConfigResponse> near = c->GetBestConfig(Lookup(DecodeProblem(8, 8000)));
  ASSERT_TRUE(near.ok());
  EXPECT_EQ(near->match(), v1::MATCH_NEAREST_BUCKET);
  EXPECT_EQ(near->bucket(), "b4-l4096");
  EXPECT_EQ(near->requested_bucket(), "b8-l8192");
  absl::StatusOr<v1::GetBestConfigResponse> far = c->GetBestConfig(Lookup(DecodeProblem(32, 60000)));
  ASSERT_TRUE(far.ok());
  EXPECT_EQ(far->bucket(), "b64-l65536");

  // Another GPU or another problem: nothing tuned.
  absl::StatusOr<v1::GetBestConfigResponse> other_gpu = c->GetBestConfig(Lookup(DecodeProblem(4, 4096), 1));
  ASSERT_TRUE(other_gpu.ok());
  EXPECT_EQ(other_gpu->match(), v1::MATCH_DEFAULT);
  v1::Problem fp16 = DecodeProblem(4, 4096);
  fp16.set_dtype(v1::DTYPE_FP16);
  absl::StatusOr<v1::GetBestConfigResponse> other_problem = c->GetBestConfig(Lookup(fp16));
  ASSERT_TRUE(other_problem.ok());
  EXPECT_EQ(other_problem->match(), v1::MATCH_DEFAULT);
  EXPECT_EQ(other_problem->variant_key(), DefaultKey(fp16));
}

// Equally near buckets: the smaller bucket string wins (NearestBucket, bucket.h), as in the
// runtime's TunedStore.
TEST_F(LookupTest, NearestBucketTiesGoToTheSmallerBucketString) {
  const std::string b4 = DefaultKey(DecodeProblem()), b16 = TunedKey(DecodeProblem());
  ASSERT_NE(b4, b16);
  Seed(store(), DecodeProblem(4, 4096), b4, 10);
  Seed(store(), DecodeProblem(16, 4096), b16, 10);
  StartServer();
  auto c = NewClient();
  absl::StatusOr<v1::GetBestConfigResponse> r = c->GetBestConfig(Lookup(DecodeProblem(8, 4096)));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->match(), v1::MATCH_NEAREST_BUCKET);
  EXPECT_EQ(r->bucket(), "b16-l4096");  // one octave either way; "b16..." < "b4..."
  EXPECT_EQ(r->variant_key(), b16);
}

TEST_F(LookupTest, StaleOrForeignRowsAreNeverServed) {
  Seed(store(), DecodeProblem(4, 4096), "", 10, kGeneratorVersion + 1);      // other generator
  Seed(store(), DecodeProblem(8, 4096), "not-a-variant-key", 5);              // garbage
  Seed(store(), DecodeProblem(16, 4096), DefaultKey([] {                     // wrong problem
    v1::Problem p = DecodeProblem();
    p.set_num_q_heads(16);
    return p;
  }()), 5);
  StartServer();
  auto c = NewClient();
  absl::StatusOr<v1::GetBestConfigResponse> r = c->GetBestConfig(Lookup(DecodeProblem(4, 4096)));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->match(), v1::MATCH_DEFAULT);
  // The client's own generator version selects the stale row.
  v1::GetBestConfigRequest newer = Lookup(DecodeProblem(4, 4096));
  newer.set_generator_version(kGeneratorVersion + 1);
  r = c->GetBestConfig(newer);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->match(), v1::MATCH_EXACT);
}

// A test-only variant (it faults or hangs on purpose) in best_configs, from an old import or a
// hand edit, is never served: a real row of another bucket or the default answers instead.
TEST_F(LookupTest, TestOnlyVariantsAreNeverServed) {
  Seed(store(), DecodeProblem(4, 4096), TunedKey(DecodeProblem()) + "-testhang", 1);
  Seed(store(), DecodeProblem(8, 8192), TunedKey(DecodeProblem()) + "-testfault", 1);
  Seed(store(), DecodeProblem(64, 65536), "", 20);
  StartServer();
  auto c = NewClient();
  for (const v1::Problem& p : {DecodeProblem(4, 4096), DecodeProblem(8, 8192)}) {
    absl::StatusOr<v1::GetBestConfigResponse> r = c->GetBestConfig(Lookup(p));
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->match(), v1::MATCH_NEAREST_BUCKET);
    EXPECT_EQ(r->bucket(), "b64-l65536");
    EXPECT_EQ(r->variant_key(), TunedKey(DecodeProblem()));
  }
}

// A row of a family the asking GPU cannot run (sm_90's wgmma filed under an sm_89 GPU, by a
// hand edit or an import) is passed over for the nearest row it can run, not served.
TEST_F(LookupTest, RowsOfAFamilyTheDeviceCannotRunAreSkipped) {
  FakeBackend backend(nullptr, {});
  absl::StatusOr<cache::DeviceInfo> dev = backend.device(0);
  ASSERT_TRUE(dev.ok());
  cache::DeviceInfo sm89 = *dev;
  const size_t arch = sm89.fingerprint.find("|sm_90|");
  ASSERT_NE(arch, std::string::npos) << sm89.fingerprint;
  sm89.fingerprint.replace(arch, 7, "|sm_89|");
  ASSERT_TRUE(store().UpsertDevice(sm89).ok());
  const std::string wgmma = RuntimeDefaultKey(PrefillProblem(), 90), mma = TunedKey(PrefillProblem());
  ASSERT_TRUE(absl::StrContains(wgmma, ".wgmma-")) << wgmma;
  ASSERT_FALSE(absl::StrContains(mma, ".wgmma-")) << mma;
  auto put = [&](const v1::Problem& p, const std::string& key) {
    absl::StatusOr<ProblemSpec> spec = ValidateProblem(p, "problem");
    ASSERT_TRUE(spec.ok()) << spec.status();
    cache::BestConfig c;
    c.device_fingerprint = sm89.fingerprint;
    c.problem_key = spec->problem_key;
    c.bucket = spec->bucket;
    c.variant_key = key;
    c.median_us = 10;
    c.generator_version = kGeneratorVersion;
    c.nvrtc_version = 13000;
    ASSERT_TRUE(store().SetBestConfig(c).ok());
  };
  put(PrefillProblem(1, 4096), wgmma);  // t4096-l4096
  put(PrefillProblem(2, 4096), mma);    // t8192-l4096
  StartServer();
  auto c = NewClient();
  absl::StatusOr<v1::GetBestConfigResponse> r = c->GetBestConfig(LookupOn(PrefillProblem(1, 4096), 8, 9));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->match(), v1::MATCH_NEAREST_BUCKET);
  EXPECT_EQ(r->bucket(), "t8192-l4096");
  EXPECT_EQ(r->variant_key(), mma);
}

TEST_F(LookupTest, WritesByOtherProcessesShowWithinTheCacheTtl) {
  ServerOptions o;
  o.lookup_cache_ttl = absl::Milliseconds(200);
  StartServer(o);
  auto c = NewClient();
  EXPECT_EQ(c->GetBestConfig(Lookup(DecodeProblem()))->match(), v1::MATCH_DEFAULT);  // now cached
  Seed(store(), DecodeProblem(), "", 7);  // another writer of the same file
  absl::SleepFor(absl::Milliseconds(300));
  absl::StatusOr<v1::GetBestConfigResponse> r = c->GetBestConfig(Lookup(DecodeProblem()));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->match(), v1::MATCH_EXACT);
  EXPECT_DOUBLE_EQ(r->median_us(), 7);
}

struct BadCase {
  const char* field;
  std::function<void(v1::GetBestConfigRequest&)> mutate;
};

TEST_F(LookupTest, InvalidArgumentNamesTheField) {
  StartServer();
  auto c = NewClient();
  const std::vector<BadCase> cases = {
      {"device: required", [](auto& r) { r.clear_device(); }},
      {"problem: required", [](auto& r) { r.clear_problem(); }},
      {"problem.mode", [](auto& r) { r.mutable_problem()->set_mode(v1::MODE_UNSPECIFIED); }},
      {"problem.mode: required: MODE_DECODE, MODE_PREFILL or MODE_BACKWARD",
       [](auto& r) { r.mutable_problem()->set_mode(static_cast<v1::Mode>(9)); }},
      {"problem.dtype", [](auto& r) { r.mutable_problem()->set_dtype(static_cast<v1::DType>(77)); }},
      {"problem.head_dim=96", [](auto& r) { r.mutable_problem()->set_head_dim(96); }},
      {"problem.num_kv_heads=0", [](auto& r) { r.mutable_problem()->set_num_kv_heads(0); }},
      {"problem.num_q_heads", [](auto& r) { r.mutable_problem()->set_num_q_heads(12); }},
      {"problem.page_size", [](auto& r) { r.mutable_problem()->set_page_size(16); }},
      {"problem.kv_layout", [](auto& r) { r.mutable_problem()->set_kv_layout(v1::KV_LAYOUT_UNSPECIFIED); }},
      {"problem.probe", [](auto& r) { r.mutable_problem()->set_probe(v1::PROBE_UNSPECIFIED); }},
      {"problem.affine", [](auto& r) { r.mutable_problem()->set_affine(v1::AFFINE_UNSPECIFIED); }},
      {"problem.batch=0", [](auto& r) { r.mutable_problem()->set_batch(0); }},
      {"problem.seqlen=-5", [](auto& r) { r.mutable_problem()->set_seqlen(-5); }},
      {"problem.context_len=7: decode", [](auto& r) { r.mutable_problem()->set_context_len(7); }},
      {"problem.context_len=100: prefill", [](auto& r) { *r.mutable_problem() = PrefillProblem(1, 4096, 100); }},
      {"problem.context_len=-1: prefill", [](auto& r) { *r.mutable_problem() = PrefillProblem(1, 4096, -1); }},
      {"device.name: required", [](auto& r) { r.mutable_device()->clear_name(); }},
      {"device.name: must not contain", [](auto& r) { r.mutable_device()->set_name("a|b"); }},
      {"device.name: longer than", [](auto& r) { r.mutable_device()->set_name(std::string(300, 'x')); }},
      {"device.cc_major=0", [](auto& r) { r.mutable_device()->set_cc_major(0); }},
      {"device.sm_count=0", [](auto& r) { r.mutable_device()->set_sm_count(0); }},
      {"device.memory_bytes", [](auto& r) { r.mutable_device()->set_memory_bytes(5); }},
      {"device.nvrtc_version='abc'", [](auto& r) { r.mutable_device()->set_nvrtc_version("abc"); }},
      {"generator_version=-1", [](auto& r) { r.set_generator_version(-1); }},
  };
  for (const BadCase& bad : cases) {
    v1::GetBestConfigRequest r = Lookup(DecodeProblem());
    bad.mutate(r);
    absl::StatusOr<v1::GetBestConfigResponse> resp = c->GetBestConfig(r);
    EXPECT_TRUE(absl::IsInvalidArgument(resp.status())) << bad.field << ": " << resp.status();
    EXPECT_NE(resp.status().message().find(bad.field), absl::string_view::npos)
        << "expected '" << bad.field << "' in: " << resp.status().message();
  }
}

TEST_F(LookupTest, MessagesOverTheSizeLimitAreRefused) {
  ServerOptions o;
  o.limits.max_message_bytes = 64 << 10;
  StartServer(o);
  ClientOptions co;
  co.max_message_bytes = 8 << 20;  // let the client send it: the server must refuse
  auto c = NewClient(co);
  v1::GetBestConfigRequest r = Lookup(DecodeProblem());
  r.mutable_device()->set_name(std::string(1 << 20, 'x'));
  absl::StatusOr<v1::GetBestConfigResponse> resp = c->GetBestConfig(r);
  EXPECT_TRUE(absl::IsResourceExhausted(resp.status())) << resp.status();
}

TEST_F(LookupTest, ListConfigsPagesAndFilters) {
  for (int batch : {1, 2, 4, 8, 16}) Seed(store(), DecodeProblem(batch, 4096), "", batch);
  Seed(store(), DecodeProblem(4, 4096), "", 1, kGeneratorVersion + 1);  // replaces b4: stale
  StartServer();
  auto c = NewClient();
  v1::ListConfigsRequest req;
  req.set_page_size(2);
  std::vector<v1::ConfigEntry> all;
  for (int pages = 0;; ++pages) {
    ASSERT_LT(pages, 5);
    absl::StatusOr<v1::ListConfigsResponse> r = c->ListConfigs(req);
    ASSERT_TRUE(r.ok()) << r.status();
    all.insert(all.end(), r->configs().begin(), r->configs().end());
    if (r->next_page_token().empty()) break;
    req.set_page_token(r->next_page_token());
  }
  ASSERT_EQ(all.size(), 5u);
  // Buckets in numeric order across pages (text order would be b1, b16, b2, b4, b8).
  std::vector<std::string> buckets;
  for (const v1::ConfigEntry& e : all) buckets.push_back(e.bucket());
  EXPECT_EQ(buckets, (std::vector<std::string>{"b1-l4096", "b2-l4096", "b4-l4096", "b8-l4096", "b16-l4096"}));
  int stale = 0;
  for (const v1::ConfigEntry& e : all) stale += e.stale();
  EXPECT_EQ(stale, 1);

  v1::ListConfigsRequest filtered;
  filtered.set_problem_key("no-such-problem");
  EXPECT_EQ(c->ListConfigs(filtered)->configs_size(), 0);

  v1::ListConfigsRequest bad;
  bad.set_page_token("abc");
  absl::StatusOr<v1::ListConfigsResponse> r = c->ListConfigs(bad);
  EXPECT_TRUE(absl::IsInvalidArgument(r.status()));
  EXPECT_NE(r.status().message().find("page_token"), absl::string_view::npos);
  bad.clear_page_token();
  bad.set_page_size(100000);
  r = c->ListConfigs(bad);
  EXPECT_NE(r.status().message().find("page_size"), absl::string_view::npos) << r.status();
}

// A driver patch release keeps the tuned answers: the device key has no driver in it, so a
// client on driver 13010 (or one that does not say) gets what was tuned under 13000.
TEST_F(LookupTest, DriverBumpKeepsExactAnswers) {
  const v1::Problem p = DecodeProblem(4, 4096);
  Seed(store(), p, "", 3);  // fake device 0, driver 13000
  StartServer();
  auto c = NewClient();
  for (int driver : {13000, 13010, 0}) {
    v1::GetBestConfigRequest r = Lookup(p);
    r.mutable_device()->set_driver_version(driver);
    absl::StatusOr<v1::GetBestConfigResponse> resp = c->GetBestConfig(r);
    ASSERT_TRUE(resp.ok()) << driver << ": " << resp.status();
    EXPECT_EQ(resp->match(), v1::MATCH_EXACT) << driver;
    EXPECT_EQ(resp->variant_key(), TunedKey(p)) << driver;
  }
  v1::GetBestConfigRequest bad = Lookup(p);
  bad.mutable_device()->set_driver_version(-1);
  absl::StatusOr<v1::GetBestConfigResponse> resp = c->GetBestConfig(bad);
  EXPECT_TRUE(absl::IsInvalidArgument(resp.status())) << resp.status();
  EXPECT_NE(resp.status().message().find("driver_version"), absl::string_view::npos);
}

}  // namespace
}  // namespace parallax::service::testing
