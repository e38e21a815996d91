// plx_context_create(NULL, ...) takes its tuning database from $PARALLAX_DB (label gpu; skips
// without a device): a file that is not a database fails creation naming the path, "none"
// runs without tuned configs, and a database holding a tuned config for a decode problem
// makes plx_decode_plan_info report it as PLX_CHOICE_EXACT.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>

#include "gpu_harness.h"
#include "parallax/cache/store.h"
#include "parallax/codegen/bucket.h"
#include "parallax/codegen/variant.h"
#include "parallax/parallax.h"
#include "parallax/parallax.hpp"
#include "parallax/runtime/nvrtc_compiler.h"

namespace parallax::testing {
namespace {

// An environment variable set for the scope; the old value (or its absence) comes back after.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::string& value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    ::setenv(name, value.c_str(), 1);
  }
  ~ScopedEnv() {
    if (old_) ::setenv(name_, old_->c_str(), 1);
    else ::unsetenv(name_);
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
  std::optional<std::string> old_;
};

constexpr int kB = 2, kHq = 8, kHkv = 2, kD = 128, kL = 1000;

void* Fake(uintptr_t i) { return reinterpret_cast<void*>(0x100000 * i); }

// A contiguous bf16 decode over fake (aligned, never dereferenced) pointers: planning reads
// shapes only.
plx_decode_args DecodeProblem() {
  plx_decode_args a = MakeDecodeArgs();
  a.q = MakeTensor(Fake(1), PLX_BF16, {kB, kHq, kD});
  a.r = MakeTensor(Fake(2), PLX_BF16, {kB, kHq, kD});
  a.k = MakeTensor(Fake(3), PLX_BF16, {kB, kL, kHkv, kD});
  a.v = MakeTensor(Fake(4), PLX_BF16, {kB, kL, kHkv, kD});
  a.out = MakeTensor(Fake(5), PLX_BF16, {kB, kHq, kD});
  return a;
}

class ContextDbGpu : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    rt_ = SharedRuntime(&why);
    if (rt_ == nullptr) GTEST_SKIP() << "no GPU: " << why;
    dir_ = std::filesystem::temp_directory_path() /
           ("plx_context_db_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override {
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  // plx_decode_plan_info of DecodeProblem() through a context made with default options.
  plx_plan_info PlanWithDefaultOptions() {
    plx_context* ctx = nullptr;
    plx_plan_info info;
    plx_plan_info_init(&info);
    EXPECT_EQ(plx_context_create(nullptr, &ctx), PLX_OK) << plx_last_error();
    if (ctx == nullptr) return info;
    const plx_decode_args a = DecodeProblem();
    EXPECT_EQ(plx_decode_plan_info(ctx, &a, &info), PLX_OK) << plx_last_error();
    plx_context_destroy(ctx);
    return info;
  }

  Runtime* rt_ = nullptr;
  std::filesystem::path dir_;
};

TEST_F(ContextDbGpu, NotADatabaseFailsCreationNamingThePath) {
  const std::string path = (dir_ / "not-a-database.db").string();
  std::ofstream(path) << std::string(300, 'x');  // longer than SQLite's 100-byte header
  ScopedEnv env("PARALLAX_DB", path);
  plx_context* ctx = reinterpret_cast<plx_context*>(0x1);
  EXPECT_NE(plx_context_create(nullptr, &ctx), PLX_OK);
  EXPECT_EQ(ctx, nullptr);
  const std::string msg = plx_last_error();
  EXPECT_EQ(msg.rfind("plx_context_create: ", 0), 0u) << msg;
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find("PARALLAX_DB=none"), std::string::npos) << msg;  // the way out
}

TEST_F(ContextDbGpu, NoneRunsWithoutTunedConfigs) {
  const std::string path = (dir_ / "not-a-database.db").string();
  std::ofstream(path) << std::string(300, 'x');
  ScopedEnv env("PARALLAX_DB", "none");  // "none" is no path: that file is never looked at
  const plx_plan_info info = PlanWithDefaultOptions();
  EXPECT_EQ(info.choice, PLX_CHOICE_DEFAULT) << info.variant;
  EXPECT_STRNE(info.variant, "");
}

TEST_F(ContextDbGpu, ATunedDecodeConfigIsExact) {
  std::string key;
  {
    ScopedEnv none("PARALLAX_DB", "none");
    const plx_plan_info info = PlanWithDefaultOptions();  // the default: a valid key for the problem
    ASSERT_EQ(info.choice, PLX_CHOICE_DEFAULT);
    key = info.variant;
  }
  absl::StatusOr<Variant> v = Variant::Parse(key);
  ASSERT_TRUE(v.ok()) << v.status();
  const std::string path = (dir_ / "tuner.db").string();
  {
    auto store = cache::Store::Open(path);
    ASSERT_TRUE(store.ok()) << store.status();
    const DeviceInfo& dev = rt_->device();
    cache::DeviceInfo d;  // best configs reference a known device and problem
    d.fingerprint = dev.fingerprint();
    d.name = dev.name;
    ASSERT_TRUE((*store)->UpsertDevice(d).ok());
    const std::string problem = ProblemKey(v->problem(), v->algorithm());
    ASSERT_TRUE((*store)->UpsertProblem(problem, nlohmann::json::object()).ok());
    cache::BestConfig c;
    c.device_fingerprint = dev.fingerprint();
    c.problem_key = problem;
    c.bucket = ToString(BucketFor(kB, kL));
    c.variant_key = key;
    c.median_us = 10;
    c.generator_version = kGeneratorVersion;
    c.nvrtc_version = NvrtcVersionNumber(dev.nvrtc_version);
    absl::Status s = (*store)->SetBestConfig(c);
    ASSERT_TRUE(s.ok()) << s;
  }
  ScopedEnv env("PARALLAX_DB", path);
  const plx_plan_info info = PlanWithDefaultOptions();
  EXPECT_EQ(info.choice, PLX_CHOICE_EXACT) << plx_choice_string(info.choice) << " " << info.variant;
  EXPECT_EQ(std::string(info.variant), key);
}

}  // namespace
}  // namespace parallax::testing
