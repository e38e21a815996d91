// Tests of the variant IR: key round trips over whole search spaces, key and validation error
// messages, hash stability, and the JSON form (variant_json.h).
#include "parallax/codegen/variant.h"

#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "parallax/codegen/kernel_family.h"
#include "parallax/codegen/space.h"
#include "parallax/codegen/variant_json.h"

namespace parallax {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;
using nlohmann::json;

constexpr const char* kKey = "decode-bf16-d128-h32x8-contig-nowin.learned-plain.mma-n64-w4-s2-splitauto-g4";

Problem MakeProblem(Mode mode, int d, int hq, int hkv, int page_size = 0, bool window = false,
                    DType dtype = DType::kBF16) {
  Problem p;
  p.mode = mode;
  p.dtype = dtype;
  p.head_dim = d;
  p.num_q_heads = hq;
  p.num_kv_heads = hkv;
  p.kv_layout = page_size > 0 ? KvLayout::kPaged : KvLayout::kContiguous;
  p.page_size = page_size;
  p.window = window;
  return p;
}

// Every valid variant (no device pruning) of a problem with several split counts.
std::vector<Variant> WholeSpace(const Problem& p, const Algorithm& a) {
  SpaceOptions o;
  o.prune = false;
  o.splits = {0, 1, 3, 16};
  return EnumerateSpace(p, a, o);
}

struct SpaceCase {
  Problem problem;
  Algorithm algorithm;
};

std::vector<SpaceCase> SpaceCases() {
  return {
      {MakeProblem(Mode::kDecode, 128, 32, 8), {Probe::kLearned, Affine::kPlain}},
      {MakeProblem(Mode::kDecode, 64, 15, 5, 16, true, DType::kFP16), {Probe::kNone, Affine::kPlain}},
      {MakeProblem(Mode::kDecode, 256, 64, 4, 1024), {Probe::kLearned, Affine::kAmplified}},
      {MakeProblem(Mode::kPrefill, 128, 32, 32, 0, true), {Probe::kLearned, Affine::kAmplified}},
      {MakeProblem(Mode::kPrefill, 64, 6, 2, 0, false, DType::kFP16), {Probe::kNone, Affine::kAmplified}},
      {MakeProblem(Mode::kPrefill, 256, 16, 2), {Probe::kLearned, Affine::kPlain}},
  };
}

TEST(VariantKey, ParsePrintRoundTripOverWholeSpaces) {
  for (const SpaceCase& c : SpaceCases()) {
    const std::vector<Variant> space = WholeSpace(c.problem, c.algorithm);
    ASSERT_GT(space.size(), 20u);
    for (const Variant& v : space) {
      absl::StatusOr<Variant> parsed = Variant::Parse(v.Key());
      ASSERT_TRUE(parsed.ok()) << v.Key() << ": " << parsed.status();
      EXPECT_EQ(*parsed, v);
      EXPECT_EQ(parsed->problem(), v.problem()) << v.Key();
      EXPECT_EQ(parsed->algorithm(), v.algorithm()) << v.Key();
      EXPECT_EQ(parsed->schedule(), v.schedule()) << v.Key();
      EXPECT_EQ(parsed->Hash(), v.Hash()) << v.Key();
      EXPECT_EQ(parsed->Key(), v.procedural_name());
    }
  }
}

TEST(VariantKey, KeysAndHashesAreDistinctAcrossASpace) {
  const std::vector<Variant> space = WholeSpace(SpaceCases()[0].problem, SpaceCases()[0].algorithm);
  std::set<std::string> keys;
  std::set<uint64_t> hashes;
  for (const Variant& v : space) {
    keys.insert(v.Key());
    hashes.insert(v.Hash());
  }
  EXPECT_EQ(keys.size(), space.size());
  EXPECT_EQ(hashes.size(), space.size());
}

TEST(VariantKey, HashIsStable) {
  // xxh3-64 of the key text: cache rows and file names depend on this never changing.
  absl::StatusOr<Variant> v = Variant::Parse(kKey);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->Hash(), 0x6b5d8490ca0e1886ull);
  EXPECT_EQ(v->HashHex(), "6b5d8490ca0e1886");
}

TEST(VariantKey, RejectsNonCanonicalSpellings) {
  const std::vector<std::string> bad = {
      "decode-bf16-d128-h32x8-contig-nowin.learned-plain.mma-n64-w4-s2-split0-g4",    // auto is "splitauto"
      "decode-bf16-d128-h32x8-contig-nowin.learned-plain.mma-n064-w4-s2-splitauto-g4",  // leading zero
      "decode-BF16-d128-h32x8-contig-nowin.learned-plain.mma-n64-w4-s2-splitauto-g4",   // case
      "decode-bf16-d128-h32x8-contig-nowin.learned-plain.mma-n64-w4-s2-splitauto-g4.",  // trailing dot
      "decode-bf16-d128-h32x8-contig-nowin.learned-plain.mma-w4-n64-s2-splitauto-g4",   // field order
      "decode-bf16-d128-h32x8-contig-nowin.learned-plain.mma-m64-n64-w4-s2-splitauto-g4",  // prefill field
      "prefill-bf16-d128-h32x8-contig-nowin.learned-plain.mma-n64-w4-s2",             // block_m missing
      " decode-bf16-d128-h32x8-contig-nowin.learned-plain.mma-n64-w4-s2-splitauto-g4",  // whitespace
      "",
  };
  for (const std::string& key : bad) {
    absl::StatusOr<Variant> v = Variant::Parse(key);
    ASSERT_FALSE(v.ok()) << "accepted '" << key << "'";
    EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(v.status().message()), StartsWith("bad variant key '" + key + "': "));
  }
}

// Test-only kernels fault or hang on purpose: no plain parse may produce one.
TEST(VariantKey, PlainParseRefusesTestOnlyKeys) {
  const std::string prefill = "prefill-bf16-d128-h32x8-contig-nowin.learned-plain.mma-m64-n64-w4-s2";
  for (const std::string& key : {std::string(kKey) + "-testfault", std::string(kKey) + "-testhang",
                                 std::string(kKey) + "-fused-testhang", prefill + "-testfault"}) {
    EXPECT_TRUE(IsTestOnlyKey(key)) << key;
    absl::StatusOr<Variant> v = Variant::Parse(key);
    ASSERT_FALSE(v.ok()) << "accepted '" << key << "'";
    EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(v.status().message()), StartsWith("test-only variant '" + key + "': "));
    EXPECT_FALSE(Variant::Parse(key, VariantParseOptions{}).ok()) << key;
  }
  EXPECT_FALSE(IsTestOnlyKey(kKey));
  EXPECT_FALSE(IsTestOnlyKey(std::string(kKey) + "-fused"));
  EXPECT_FALSE(IsTestOnlyKey(prefill));
}

TEST(VariantKey, TestOnlyKeysParseWithTheExplicitOptIn) {
  const VariantParseOptions allow{.allow_test_faults = true};
  const std::pair<std::string, Schedule::TestFault> cases[] = {
      {std::string(kKey) + "-testfault", Schedule::TestFault::kIllegalAddress},
      {std::string(kKey) + "-testhang", Schedule::TestFault::kHang},
      {std::string(kKey) + "-fused-testhang", Schedule::TestFault::kHang},
  };
  for (const auto& [key, fault] : cases) {
    absl::StatusOr<Variant> v = Variant::Parse(key, allow);
    ASSERT_TRUE(v.ok()) << key << ": " << v.status();
    EXPECT_EQ(v->schedule().test_fault, fault);
    EXPECT_EQ(v->Key(), key);
  }
  // The opt-in admits the suffix, nothing else: test faults stay decode-only.
  EXPECT_FALSE(
      Variant::Parse("prefill-bf16-d128-h32x8-contig-nowin.learned-plain.mma-m64-n64-w4-s2-testfault", allow).ok());
  EXPECT_TRUE(Variant::Parse(kKey, allow).ok());
}

// "split0" means auto: it parses, and the error names the canonical spelling.
TEST(VariantKey, NonCanonicalKeySuggestsTheCanonicalOne) {
  absl::StatusOr<Variant> v =
      Variant::Parse("decode-bf16-d128-h32x8-contig-nowin.learned-plain.mma-n64-w4-s2-split0-g4");
  ASSERT_FALSE(v.ok());
  EXPECT_THAT(std::string(v.status().message()), HasSubstr(std::string("did you mean '") + kKey + "'"));
}

std::string CreateError(const Problem& p, const Algorithm& a, const Schedule& s) {
  absl::StatusOr<Variant> v = Variant::Create(p, a, s);
  EXPECT_FALSE(v.ok()) << "accepted " << v->Key();
  return v.ok() ? "" : std::string(v.status().message());
}

TEST(VariantValidation, MessagesNameTheFieldAndTheRule) {
  const Problem decode = MakeProblem(Mode::kDecode, 128, 32, 8);
  const Problem prefill = MakeProblem(Mode::kPrefill, 128, 32, 8);
  const Algorithm learned;
  Schedule s = CanonicalSchedule(decode, learned, Schedule{});
  ASSERT_TRUE(Variant::Create(decode, learned, s).ok());

  Schedule bn = s;
  bn.block_n = 48;  // 12 keys per warp with 4 warps: not an MMA k-step multiple
  EXPECT_EQ(CreateError(decode, learned, bn),
            "block_n=48: must be a multiple of 64 (16 keys per warp x 4 warps) for the mma path");
  bn.path = MathPath::kFma;
  bn.block_n = 64;
  EXPECT_THAT(CreateError(decode, learned, bn), HasSubstr("multiple of 128 (32 keys per warp x 4 warps) for the fma path"));

  Schedule g = s;
  g.heads_per_cta = 3;
  EXPECT_THAT(CreateError(decode, learned, g), StartsWith("heads_per_cta=3: must divide the GQA group size 4"));
  Schedule w = s;
  w.warps = 3;
  EXPECT_THAT(CreateError(decode, learned, w), StartsWith("warps=3: must be 1, 2, 4 or 8"));
  Schedule st = s;
  st.stages = 5;
  EXPECT_THAT(CreateError(decode, learned, st), StartsWith("stages=5: must be in 1..4"));
  Schedule bm = s;
  bm.block_m = 64;
  EXPECT_THAT(CreateError(decode, learned, bm), StartsWith("block_m=64: applies to prefill_sm90 and prefill and prefill_bwd_sm90 and prefill_bwd only"));

  Problem d96 = decode;
  d96.head_dim = 96;
  EXPECT_EQ(CreateError(d96, learned, s), "head_dim=96: must be 64, 128 or 256");
  // Extend over a paged cache: the wgmma family loads pages of 16 keys or more by TMA (one
  // box per page piece); smaller pages run on the portable family (cp.async gathers rows).
  Problem paged_prefill = prefill;
  paged_prefill.kv_layout = KvLayout::kPaged;
  paged_prefill.page_size = 16;
  absl::StatusOr<Variant> paged_hopper = Variant::Create(paged_prefill, learned, DefaultSchedule(paged_prefill, learned, 90));
  ASSERT_TRUE(paged_hopper.ok()) << paged_hopper.status();
  EXPECT_EQ(paged_hopper->schedule().path, MathPath::kWgmma);
  paged_prefill.page_size = 8;
  absl::StatusOr<Variant> small_pages = Variant::Create(paged_prefill, learned, DefaultSchedule(paged_prefill, learned, 90));
  ASSERT_TRUE(small_pages.ok()) << small_pages.status();
  EXPECT_EQ(small_pages->schedule().path, MathPath::kMma);
  EXPECT_THAT(CreateError(paged_prefill, learned, DefaultSchedule(prefill, learned, 90)),
              HasSubstr("page_size=8: the wgmma family loads pages of at least 16 keys by TMA"));
  paged_prefill.page_size = 48;
  EXPECT_THAT(CreateError(paged_prefill, learned, DefaultSchedule(prefill, learned, 0)),
              StartsWith("page_size=48: must be a power of two in 1..1024"));
  Schedule split = CanonicalSchedule(prefill, learned, Schedule{});
  split.splits = 2;
  EXPECT_THAT(CreateError(prefill, learned, split), StartsWith("splits=2: applies to decode and decode_sm90 only"));
}

TEST(VariantValidation, ParseReportsTheValidationMessageWithTheKey) {
  const std::string key = "decode-bf16-d128-h32x8-contig-nowin.learned-plain.mma-n48-w4-s2-splitauto-g4";
  absl::StatusOr<Variant> v = Variant::Parse(key);
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.status().message(),
            "bad variant key '" + key + "': block_n=48: must be a multiple of 64 (16 keys per warp x 4 warps) "
            "for the mma path");
}

// ---- JSON --------------------------------------------------------------------------------

// The error VariantFromJson gives for `text`, "" when it is accepted.
std::string JsonErrorText(const std::string& text) {
  absl::StatusOr<Variant> v = VariantFromJson(json::parse(text));
  return v.ok() ? "" : std::string(v.status().message());
}

std::string WithSchedule(const std::string& schedule_fields) {
  return R"({"problem": {"mode": "decode", "dtype": "bf16", "head_dim": 128, "num_q_heads": 32,
                         "num_kv_heads": 8}, "schedule": {)" +
         schedule_fields + "}}";
}

TEST(VariantJson, RoundTripsOverWholeSpacesInAllThreeForms) {
  for (const SpaceCase& c : SpaceCases()) {
    for (const Variant& v : WholeSpace(c.problem, c.algorithm)) {
      const json full = ToJson(v);
      absl::StatusOr<Variant> back = VariantFromJson(full);
      ASSERT_TRUE(back.ok()) << full.dump() << ": " << back.status();
      EXPECT_EQ(*back, v);

      absl::StatusOr<Variant> by_key = VariantFromJson(json{{"key", v.Key()}});
      ASSERT_TRUE(by_key.ok()) << by_key.status();
      EXPECT_EQ(*by_key, v);

      json structured = full;
      structured.erase("key");
      structured.erase("hash");
      absl::StatusOr<Variant> by_fields = VariantFromJson(structured);
      ASSERT_TRUE(by_fields.ok()) << structured.dump() << ": " << by_fields.status();
      EXPECT_EQ(*by_fields, v);
      // And through text, as the CLI and the database carry it.
      EXPECT_EQ(*VariantFromJson(json::parse(full.dump())), v);
    }
  }
}

TEST(VariantJson, WritesEveryField) {
  const json j = ToJson(*Variant::Parse(kKey));
  EXPECT_EQ(j["key"], kKey);
  EXPECT_EQ(j["hash"], "6b5d8490ca0e1886");
  EXPECT_EQ(j["generator_version"], kGeneratorVersion);
  EXPECT_EQ(j["problem"],
            json::parse(R"({"mode":"decode","dtype":"bf16","head_dim":128,"num_q_heads":32,"num_kv_heads":8,
                            "kv_layout":"contiguous","page_size":0,"window":false})"));
  EXPECT_EQ(j["algorithm"], json::parse(R"({"probe":"learned","affine":"plain"})"));
  EXPECT_EQ(j["schedule"], json::parse(R"({"path":"mma","block_n":64,"warps":4,"stages":2,"splits":0,
                                            "heads_per_cta":4,"block_m":0,"fused_merge":false})"));
}

// Every Schedule field survives ToJson -> text -> VariantFromJson, in the full and the
// structured-only form; the decode spaces also with their fused-merge twins.
TEST(VariantJson, EveryScheduleFieldRoundTripsIncludingFusedMerge) {
  int fused = 0;
  for (const SpaceCase& c : SpaceCases()) {
    std::vector<Variant> all = WholeSpace(c.problem, c.algorithm);
    for (const Variant& v : WholeSpace(c.problem, c.algorithm)) {
      Schedule s = v.schedule();
      s.fused_merge = true;
      if (absl::StatusOr<Variant> twin = Variant::Create(v.problem(), v.algorithm(), s); twin.ok()) {
        all.push_back(*twin);
        ++fused;
      }
    }
    for (const Variant& v : all) {
      const json full = json::parse(ToJson(v).dump());
      absl::StatusOr<Variant> back = VariantFromJson(full);
      ASSERT_TRUE(back.ok()) << full.dump() << ": " << back.status();
      EXPECT_EQ(back->Key(), v.Key());
      EXPECT_EQ(back->schedule(), v.schedule()) << v.Key();
      json structured = full;
      structured.erase("key");
      structured.erase("hash");
      absl::StatusOr<Variant> by_fields = VariantFromJson(structured);
      ASSERT_TRUE(by_fields.ok()) << structured.dump() << ": " << by_fields.status();
      EXPECT_EQ(by_fields->Key(), v.Key());
    }
  }
  EXPECT_GT(fused, 100);
  EXPECT_THAT(JsonErrorText(WithSchedule(R"("fused_merge": 1)")),
              HasSubstr("schedule.fused_merge: expected true or false"));
}

// test_fault is written (only when set) but read back only with the parse opt-in, whichever
// form carries it: the key, the structured field, or both.
TEST(VariantJson, TestFaultNeedsTheExplicitOptIn) {
  const VariantParseOptions allow{.allow_test_faults = true};
  const Variant v = *Variant::Parse(std::string(kKey) + "-testhang", allow);
  const json full = ToJson(v);
  EXPECT_EQ(full["schedule"]["test_fault"], "hang");
  EXPECT_FALSE(ToJson(*Variant::Parse(kKey))["schedule"].contains("test_fault"));
  json structured = full;
  structured.erase("key");
  structured.erase("hash");
  for (const json& j : {full, structured, json{{"key", v.Key()}}}) {
    absl::StatusOr<Variant> plain = VariantFromJson(j);
    ASSERT_FALSE(plain.ok()) << "accepted " << j.dump();
    EXPECT_EQ(plain.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(plain.status().message()), HasSubstr("test-only variant")) << j.dump();
    absl::StatusOr<Variant> opted = VariantFromJson(j, allow);
    ASSERT_TRUE(opted.ok()) << j.dump() << ": " << opted.status();
    EXPECT_EQ(*opted, v);
  }
  EXPECT_EQ(JsonErrorText(WithSchedule(R"("test_fault": "none")")), "");  // the default is fine
  EXPECT_THAT(JsonErrorText(WithSchedule(R"("test_fault": "illegal_address")")),
              HasSubstr("schedule.test_fault: 'illegal_address' makes a test-only variant"));
  EXPECT_THAT(JsonErrorText(WithSchedule(R"("test_fault": "boom")")),
              HasSubstr("schedule.test_fault: 'boom' is not one of none, illegal_address, hang"));
}

TEST(VariantJson, StructuredFormFillsOmittedFieldsCanonically) {
  const json j = json::parse(R"({"problem": {"mode": "decode", "dtype": "bf16", "head_dim": 128,
                                             "num_q_heads": 32, "num_kv_heads": 8},
                                 "schedule": {"block_n": 64}})");
  absl::StatusOr<Variant> v = VariantFromJson(j);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->Key(), kKey);
}

std::string JsonError(const std::string& text) {
  absl::StatusOr<Variant> v = VariantFromJson(json::parse(text));
  EXPECT_FALSE(v.ok()) << "accepted " << text;
  if (v.ok()) return "";
  EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(v.status().message());
}

TEST(VariantJson, ErrorsNameTheField) {
  EXPECT_EQ(JsonError(R"({"key": "x", "colour": 1})"), "variant JSON: unknown field 'colour'");
  EXPECT_EQ(JsonError(WithSchedule(R"("block_n": 64, "blockm": 8, "warp": 4)")),
            "variant JSON: unknown fields 'schedule.blockm', 'schedule.warp'");
  EXPECT_EQ(JsonError(WithSchedule(R"("block_n": "64")")),
            "variant JSON: schedule.block_n: expected an integer, got string");
  EXPECT_EQ(JsonError(WithSchedule(R"("block_n": 64.5)")),
            "variant JSON: schedule.block_n: expected an integer, got number");
  EXPECT_THAT(JsonError(WithSchedule(R"("block_n": 1e12)")), HasSubstr("schedule.block_n"));
  EXPECT_THAT(JsonError(WithSchedule(R"("stages": 12345678901)")), HasSubstr("schedule.stages: 12345678901 does not fit"));
  EXPECT_EQ(JsonError(WithSchedule(R"("path": "tensor")")),
            "variant JSON: schedule.path: 'tensor' is not one of mma, fma, wgmma");
  EXPECT_EQ(JsonError(WithSchedule(R"("path": "wgmma", "warps": 1)")),  // decode_sm90's rule
            "variant JSON: warps=1: must be 2, 4 or 8");
  EXPECT_EQ(JsonError(R"({"problem": {"mode": "decode", "dtype": "bf16", "num_q_heads": 32, "num_kv_heads": 8}})"),
            "variant JSON: problem.head_dim: required field is missing");
  EXPECT_EQ(JsonError(R"({"problem": {"mode": "decode", "dtype": "bf16", "head_dim": 128, "num_q_heads": 32,
                                      "num_kv_heads": 8, "window": 1}})"),
            "variant JSON: problem.window: expected true or false, got number");
  EXPECT_EQ(JsonError(R"({"problem": [1, 2]})"), "variant JSON: problem: expected an object, got array");
  EXPECT_EQ(JsonError(R"([])"), "variant JSON: the document: expected an object, got array");
  EXPECT_THAT(JsonError(R"({})"), HasSubstr("expected a \"key\""));
  EXPECT_EQ(JsonError(R"({"schedule": {"block_n": 64}})"), "variant JSON: problem: required field is missing");
  EXPECT_EQ(JsonError(R"({"key": 5})"), "variant JSON: key: expected a string, got number");
}

TEST(VariantJson, ValidationAndConsistencyErrors) {
  EXPECT_EQ(JsonError(WithSchedule(R"("block_n": 48)")),
            "variant JSON: block_n=48: must be a multiple of 64 (16 keys per warp x 4 warps) for the mma path");
  EXPECT_THAT(JsonError(R"({"key": "decode-bf16"})"), StartsWith("variant JSON: bad variant key 'decode-bf16': "));

  json mismatch = ToJson(*Variant::Parse(kKey));
  mismatch["schedule"]["stages"] = 3;
  EXPECT_THAT(JsonError(mismatch.dump()),
              HasSubstr(std::string("key '") + kKey + "' does not match the structured fields, which give '"));
  json bad_hash = ToJson(*Variant::Parse(kKey));
  bad_hash["hash"] = "0000000000000000";
  EXPECT_THAT(JsonError(bad_hash.dump()), HasSubstr("hash: '0000000000000000' does not match"));
  json wrong_version = ToJson(*Variant::Parse(kKey));
  wrong_version["generator_version"] = "one";
  EXPECT_EQ(JsonError(wrong_version.dump()), "variant JSON: generator_version: expected an integer, got string");
}

}  // namespace
}  // namespace parallax

namespace parallax {
namespace {

// The sm_90a prefill family's keys: the wgmma path and the optional ping-pong token, in the
// key and in JSON (written only when set), and the rules that name the field.
TEST(VariantWgmma, PingPongKeysRoundTripAndTheRulesNameTheField) {
  const std::string key = "prefill-bf16-d128-h16x16-contig-nowin.learned-plain.wgmma-m64-n160-w12-s2-pp";
  absl::StatusOr<Variant> v = Variant::Parse(key);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->Key(), key);
  EXPECT_EQ(v->schedule().path, MathPath::kWgmma);
  EXPECT_TRUE(v->schedule().pingpong);
  EXPECT_EQ(v->threads(), 384);
  const nlohmann::json j = ToJson(*v);
  EXPECT_EQ(j["schedule"]["path"], "wgmma");
  EXPECT_EQ(j["schedule"]["pingpong"], true);
  absl::StatusOr<Variant> back = VariantFromJson(nlohmann::json::parse(j.dump()));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->Key(), key);
  // Without the token: no ping-pong, and JSON does not mention it.
  absl::StatusOr<Variant> plain = Variant::Parse(key.substr(0, key.size() - 3));
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_FALSE(plain->schedule().pingpong);
  EXPECT_FALSE(ToJson(*plain)["schedule"].contains("pingpong"));

  const auto error = [](std::string_view k) { return std::string(Variant::Parse(k).status().message()); };
  EXPECT_THAT(error("prefill-bf16-d128-h16x16-contig-nowin.learned-plain.wgmma-m32-n128-w8-s2-pp"),
              HasSubstr("pingpong=true: needs two consumer warpgroups (warps=12)"));
  EXPECT_THAT(error("prefill-bf16-d256-h16x16-contig-nowin.learned-plain.wgmma-m64-n64-w12-s2-pp"),
              HasSubstr("pingpong=true: not at head_dim 256"));
  EXPECT_THAT(error("prefill-bf16-d128-h16x16-contig-nowin.learned-plain.wgmma-m64-n128-w12-s1"),
              HasSubstr("stages=1: must be at least 2"));
  EXPECT_THAT(error("prefill-bf16-d128-h16x16-contig-nowin.learned-plain.wgmma-m128-n128-w12-s2"),
              HasSubstr("block_m=128: must be 64"));
  EXPECT_THAT(error("prefill-bf16-d128-h16x16-contig-nowin.learned-plain.wgmma-m64-n128-w16-s2"),
              HasSubstr("warps=16: must be 8 or 12"));
  EXPECT_THAT(error("prefill-bf16-d128-h16x16-contig-nowin.learned-plain.wgmma-m64-n128-w12-s2-px"),
              HasSubstr("wgmma-mN-nN-wN-sN[-pp]"));
  EXPECT_THAT(error("decode-bf16-d128-h32x8-contig-nowin.learned-plain.wgmma-n64-w4-s2-splitauto-g4-pp"),
              HasSubstr("wgmma-nN-wN-sN-splitN-gN[-cluster]"));  // decode on wgmma: decode_sm90's grammar
  EXPECT_TRUE(DefaultSchedule(v->problem(), v->algorithm(), 90).pingpong);  // measured the faster
  Problem decode = v->problem();
  decode.mode = Mode::kDecode;
  Schedule ds = DefaultSchedule(decode, v->algorithm());
  ds.pingpong = true;
  EXPECT_THAT(std::string(Variant::Create(decode, v->algorithm(), ds).status().message()),
              HasSubstr("pingpong=true: applies to prefill_sm90 only"));
}

}  // namespace
}  // namespace parallax
