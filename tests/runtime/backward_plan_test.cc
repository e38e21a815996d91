// The backward's variant choice (PlanPrefillBackward): an explicit key, else the tuned config
// of the call's prefill bucket from a tuning database (exact, else nearest), else the family
// default; rows that do not parse or fit are skipped. A temporary SQLite file through the
// runtime's own reader (TunedStore); host only, the tensors are never touched. CPU only.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <optional>
#include <string>

#include "parallax/cache/paths.h"
#include "parallax/cache/store.h"
#include "parallax/runtime/backward.h"
#include "parallax/runtime/nvrtc_compiler.h"
#include "tuned_store.h"

namespace parallax {
namespace {

// 16 heads of 128, MHA, probe learned, plain: keys "bwd-bf16-d128-h16x16-contig-nowin.learned-plain...".
constexpr char kTunedA[] = "bwd-bf16-d128-h16x16-contig-nowin.learned-plain.mma-m16-n64-w4-s2";
constexpr char kTunedB[] = "bwd-bf16-d128-h16x16-contig-nowin.learned-plain.mma-m32-n128-w8-s1-bulk";
constexpr char kDefault[] = "bwd-bf16-d128-h16x16-contig-nowin.learned-plain.wgmma-m32-n128-w12-s2";  // sm_90
constexpr char kPortable[] = "bwd-bf16-d128-h16x16-contig-nowin.learned-plain.mma-m32-n64-w4-s1-bulk";

class BackwardPlanTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("plx_bwd_plan_" + std::to_string(::getpid()) + "_" +
                                                     ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    path_ = (dir_ / "tuner.db").string();
    dev_.name = "Test GPU";
    dev_.cc_major = 9;
    dev_.sm_count = 132;
    dev_.nvrtc_version = "13.0";
    dev_.driver_version = 13000;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // One call: B sequences of lq queries at the end of lk keys. Addresses only need to pass the
  // host checks (16-byte aligned); nothing reads them.
  PrefillBackwardArgs Call(int batch, int lq, int lk) const {
    PrefillBackwardArgs a;
    a.batch = batch;
    a.num_q_heads = a.num_kv_heads = 16;
    a.head_dim = 128;
    a.seqlen_q = lq;
    a.seqlen_k = lk;
    void* fake = reinterpret_cast<void*>(uintptr_t{1} << 20);
    for (PlxBwdRows* t : {&a.q, &a.r, &a.k, &a.v, &a.out, &a.dout, &a.vbar, &a.dq, &a.dr, &a.dk, &a.dv})
      *t = PlxBwdRows{fake, 0, 16 * 128, 128};
    a.lse = a.tbar = static_cast<const float*>(fake);
    return a;
  }
  // A best config for the call's problem under `bucket`, as `parallax tune --mode bwd` files it.
  void Put(const std::string& bucket, const std::string& key, const std::string& problem_key = "") {
    auto s = cache::Store::Open(path_);
    ASSERT_TRUE(s.ok()) << s.status();
    cache::DeviceInfo d;
    d.fingerprint = dev_.fingerprint();
    d.name = dev_.name;
    ASSERT_TRUE((*s)->UpsertDevice(d).ok());
    const PrefillBackwardArgs a = Call(1, 1, 1);
    const std::string pk = problem_key.empty() ? ProblemKey(BackwardProblemOf(a), BackwardAlgorithmOf(a)) : problem_key;
    ASSERT_TRUE((*s)->UpsertProblem(pk, nlohmann::json::object()).ok());
    cache::BestConfig c;
    c.device_fingerprint = dev_.fingerprint();
    c.problem_key = pk;
    c.bucket = bucket;
    c.variant_key = key;
    c.median_us = 10;
    c.generator_version = kGeneratorVersion;
    c.nvrtc_version = NvrtcVersionNumber(dev_.nvrtc_version);
    absl::Status st = (*s)->SetBestConfig(c);
    ASSERT_TRUE(st.ok()) << st;
  }
  // The runtime's lookup over the file (what Runtime::Create installs for a db_path).
  TunedLookupFn Lookup() {
    auto db = TunedStore::Open(path_, dev_);
    EXPECT_TRUE(db.ok()) << db.status();
    std::shared_ptr<TunedStore> store(db.ok() ? std::move(*db) : nullptr);
    return [store](const Problem& p, const Algorithm& a, const ShapeBucket& b, const TunedKeyFilter& usable) {
      return store->Lookup(p, a, b, usable);
    };
  }
  // The plan's key and choice, or the error.
  std::pair<std::string, Choice> Plan(const PrefillBackwardArgs& a, const TunedLookupFn& lookup, int sm = 90) {
    Choice c = Choice::kExplicit;
    absl::StatusOr<Variant> v = PlanPrefillBackward(a, lookup, sm, &c);
    EXPECT_TRUE(v.ok()) << v.status();
    return {v.ok() ? v->Key() : std::string(v.status().message()), c};
  }

  std::filesystem::path dir_;
  std::string path_;
  DeviceInfo dev_;
};

TEST_F(BackwardPlanTest, BucketsAreThePrefillBucketsTuneWrites) {
  EXPECT_EQ(ToString(BackwardBucketOf(Call(4, 4096, 4096))), "t16384-l4096");
  EXPECT_EQ(ToString(BackwardBucketOf(Call(1, 3000, 3000))), "t4096-l4096");
}

TEST_F(BackwardPlanTest, TheTunedExactBucketWins) {
  Put("t16384-l4096", kTunedA);
  Put("t4096-l4096", kTunedB);  // another bucket: not the answer
  EXPECT_EQ(Plan(Call(4, 4096, 4096), Lookup()), std::make_pair(std::string(kTunedA), Choice::kTunedExact));
}

TEST_F(BackwardPlanTest, TheNearestBucketIsUsedWhenTheCallsBucketHasNone) {
  Put("t4096-l4096", kTunedB);
  Put("t1048576-l65536", kTunedA);
  EXPECT_EQ(Plan(Call(2, 4096, 4096), Lookup()), std::make_pair(std::string(kTunedB), Choice::kTunedNearest));
}

TEST_F(BackwardPlanTest, AnExplicitKeyBeatsTheDatabase) {
  Put("t16384-l4096", kTunedA);
  PrefillBackwardArgs a = Call(4, 4096, 4096);
  a.variant_key = kTunedB;
  EXPECT_EQ(Plan(a, Lookup()), std::make_pair(std::string(kTunedB), Choice::kExplicit));
  a.variant_key = "bwd-bf16-d64-h16x16-contig-nowin.learned-plain.mma-m64-n64-w4-s1";  // other problem: an error
  EXPECT_FALSE(PlanPrefillBackward(a, Lookup(), 90).ok());
}

// What the database holds is untrusted: a key that does not parse, one of another problem or
// mode filed under this problem, a test-only key. Each is skipped for the default; no error.
TEST_F(BackwardPlanTest, BadRowsAreIgnored) {
  const PrefillBackwardArgs a = Call(4, 4096, 4096);
  for (const std::string& bad :
       {std::string(kTunedA) + "-nonsense", std::string("bwd-bf16-d128-h16x16-contig-nowin.learned-plain.mma-m64"),
        std::string("bwd-bf16-d64-h16x16-contig-nowin.learned-plain.mma-m64-n64-w4-s1"),
        std::string("prefill-bf16-d128-h16x16-contig-nowin.learned-plain.mma-m64-n64-w4-s2"),
        std::string("bwd-bf16-d128-h16x16-contig-nowin.learned-plain.fma-m32-n64-w4-s1"),
        std::string(kTunedA) + "-testfault"}) {
    std::filesystem::remove(path_);
    Put("t16384-l4096", bad);
    EXPECT_EQ(Plan(a, Lookup()), std::make_pair(std::string(kDefault), Choice::kDefault)) << "row '" << bad << "'";
  }
  // A bucket that does not parse is skipped too; a good row elsewhere is then the nearest answer.
  std::filesystem::remove(path_);
  Put("t16384", kTunedA);
  EXPECT_EQ(Plan(a, Lookup()), std::make_pair(std::string(kDefault), Choice::kDefault));
  Put("t8192-l4096", kTunedB);
  EXPECT_EQ(Plan(a, Lookup()), std::make_pair(std::string(kTunedB), Choice::kTunedNearest));
}

// One unusable row must not hide a usable one: a bad row in the call's own bucket is passed
// over for the nearest good row of another bucket, not for the default.
TEST_F(BackwardPlanTest, ABadExactRowDoesNotHideAGoodNearestOne) {
  const PrefillBackwardArgs a = Call(4, 4096, 4096);  // t16384-l4096
  for (const std::string& bad :
       {std::string(kTunedA) + "-nonsense",
        std::string("bwd-bf16-d64-h16x16-contig-nowin.learned-plain.mma-m64-n64-w4-s1"),
        std::string("prefill-bf16-d128-h16x16-contig-nowin.learned-plain.mma-m64-n64-w4-s2"),
        std::string(kTunedA) + "-testfault"}) {
    std::filesystem::remove(path_);
    Put("t16384-l4096", bad);
    Put("t8192-l4096", kTunedB);
    EXPECT_EQ(Plan(a, Lookup()), std::make_pair(std::string(kTunedB), Choice::kTunedNearest)) << "row '" << bad << "'";
  }
  // A family this GPU cannot run: sm_90's wgmma row on an sm_80 GPU; on sm_90 it is the answer.
  std::filesystem::remove(path_);
  Put("t16384-l4096", kDefault);
  Put("t8192-l4096", kTunedB);
  EXPECT_EQ(Plan(a, Lookup(), 80), std::make_pair(std::string(kTunedB), Choice::kTunedNearest));
  EXPECT_EQ(Plan(a, Lookup(), 90), std::make_pair(std::string(kDefault), Choice::kTunedExact));
}

// Bad rows in every bucket, the nearest ones included: the default, no error.
TEST_F(BackwardPlanTest, OnlyBadRowsAreTheDefault) {
  const PrefillBackwardArgs a = Call(4, 4096, 4096);  // t16384-l4096
  Put("t16384-l4096", std::string(kTunedA) + "-nonsense");
  Put("t8192-l4096", "bwd-bf16-d64-h16x16-contig-nowin.learned-plain.mma-m64-n64-w4-s1");
  Put("t32768-l4096", "prefill-bf16-d128-h16x16-contig-nowin.learned-plain.mma-m64-n64-w4-s2");
  Put("t4096-l4096", kDefault);  // wgmma: not on sm_80
  Put("t65536-l4096", std::string(kTunedA) + "-testhang");
  const std::string sm80_default = PlanPrefillBackward(a, TunedLookupFn(), 80)->Key();
  EXPECT_EQ(Plan(a, Lookup(), 80), std::make_pair(sm80_default, Choice::kDefault));
  // The same file on sm_90: the wgmma row of t4096-l4096 is now the nearest usable one.
  EXPECT_EQ(Plan(a, Lookup(), 90), std::make_pair(std::string(kDefault), Choice::kTunedNearest));
}

// A lookup that answers a key of another problem (a service, a chained lookup) is checked
// the same way as a database row.
TEST_F(BackwardPlanTest, ALookupsAnswerIsCheckedLikeARow) {
  const TunedLookupFn liar = [](const Problem&, const Algorithm&, const ShapeBucket&, const TunedKeyFilter&) {
    return absl::StatusOr<std::pair<std::string, Choice>>(
        std::make_pair(std::string("bwd-fp16-d128-h16x16-contig-nowin.learned-plain.mma-m16-n64-w4-s1"),
                       Choice::kTunedExact));
  };
  EXPECT_EQ(Plan(Call(4, 4096, 4096), liar), std::make_pair(std::string(kDefault), Choice::kDefault));
  const TunedLookupFn failing = [](const Problem&, const Algorithm&, const ShapeBucket&, const TunedKeyFilter&) {
    return absl::StatusOr<std::pair<std::string, Choice>>(absl::InternalError("database is locked"));
  };
  EXPECT_EQ(Plan(Call(4, 4096, 4096), failing), std::make_pair(std::string(kDefault), Choice::kDefault));
}

// PARALLAX_DB=none: the runtime opens no database, so there is no lookup: the default, even
// with a tuned row in the file the default location would have named.
TEST_F(BackwardPlanTest, NoDatabaseIsTheDefault) {
  Put("t16384-l4096", kTunedA);
  const char* old = ::getenv("PARALLAX_DB");
  const std::optional<std::string> saved = old ? std::optional<std::string>(old) : std::nullopt;
  ::setenv("PARALLAX_DB", "none", 1);
  const std::string resolved = cache::ResolveDbPath("");
  if (saved) ::setenv("PARALLAX_DB", saved->c_str(), 1);
  else ::unsetenv("PARALLAX_DB");
  EXPECT_EQ(resolved, "");
  EXPECT_EQ(Plan(Call(4, 4096, 4096), TunedLookupFn()), std::make_pair(std::string(kDefault), Choice::kDefault));
  EXPECT_EQ(PlanPrefillBackward(Call(4, 4096, 4096))->Key(), kPortable);  // no database, no device: portable
}

}  // namespace
}  // namespace parallax
