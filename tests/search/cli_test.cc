// The search subcommands as a user runs them (plx_search_cli is built from the `parallax`
// CLI's own command sources): help, argument errors, `db show/export/import/verify` on a
// database the tuner library wrote, the no-GPU paths of `tune` and `bench`, and `space`'s
// families per arch.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include <sys/stat.h>

#include "parallax/cache/db.h"
#include "parallax/cache/store.h"
#include "parallax/codegen/bucket.h"
#include "parallax/codegen/generator.h"
#include "parallax/codegen/kernel_family.h"
#include "parallax/runtime/binary_cache.h"
#include "parallax/runtime/device.h"
#include "parallax/runtime/nvrtc_compiler.h"
#include "parallax/search/tune_args.h"
#include "parallax/search/tuning_db.h"

namespace parallax::search {
namespace {

struct Result {
  int code = -1;
  std::string out, err;
  double seconds = 0;
};

// Runs the CLI with args (a shell-quoted string), capturing stdout and stderr.
Result Cli(const std::string& args, const std::string& dir) {
  const std::string out = dir + "/stdout", err = dir + "/stderr";
  const std::string cmd = std::string(PLX_SEARCH_CLI) + " " + args + " >" + out + " 2>" + err;
  const auto t0 = std::chrono::steady_clock::now();
  const int status = std::system(cmd.c_str());
  Result r;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  auto slurp = [](const std::string& p) {
    std::string s;
    if (FILE* f = std::fopen(p.c_str(), "r")) {
      std::array<char, 4096> buf;
      size_t n;
      while ((n = std::fread(buf.data(), 1, buf.size(), f)) > 0) s.append(buf.data(), n);
      std::fclose(f);
    }
    return s;
  };
  r.out = slurp(out);
  r.err = slurp(err);
  return r;
}

bool OneErrorLine(const std::string& err) {
  return err.rfind("parallax: ", 0) == 0 && err.find('\n') == err.size() - 1;
}

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::string(PLX_BINARY_DIR) + "/search_cli_test_" + std::to_string(::getpid()) + "_" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override {
    if (!HasFailure()) std::filesystem::remove_all(dir_);
  }
  // The device and problem the databases below are written for.
  static DeviceInfo FakeDevice() {
    DeviceInfo d;
    d.name = "FakeGPU";
    d.cc_major = 9;
    d.sm_count = 132;
    d.nvrtc_version = "13.0";
    return d;
  }
  static TuneRequest QwenRequest() {
    TuneArgs a;
    a.preset = "qwen3-0.6b";
    return *MakeTuneRequest(a);
  }
  // A database with one device, problem, a few measurements and two best configs, written
  // through the same code the tuner uses.
  std::string MakeDb(const std::string& name) {
    const std::string path = dir_ + "/" + name;
    std::unique_ptr<TuningDb> db = *TuningDb::Open(path);
    const DeviceInfo d = FakeDevice();
    const TuneRequest req = QwenRequest();
    UnitKey u{*db->DeviceId(d), d.fingerprint(), *db->ProblemId(req.problem, req.algorithm),
              ProblemKey(req.problem, req.algorithm), "b1-l1024", 13000, std::nullopt};
    const std::string def = DefaultVariantKey(req.problem, req.algorithm);
    EXPECT_TRUE(db->Record(u, def, Outcome::Ok(20, 19, 21, 20)).ok());
    EXPECT_TRUE(db->Record(u, def + "-testhang", Outcome::Bad(Verdict::kTimeout, "no answer")).ok());
    EXPECT_TRUE(db->StoreBest(u).ok());
    u.bucket = "b8-l4096";
    EXPECT_TRUE(db->Record(u, def, Outcome::Ok(30, 29, 31, 20)).ok());
    EXPECT_TRUE(db->StoreBest(u).ok());
    return path;
  }
  std::string dir_;
};

TEST_F(CliTest, HelpListsTheCommandsButNotTheWorker) {
  Result r = Cli("--help", dir_);
  EXPECT_EQ(r.code, 0);
  for (const char* c : {"tune", "db", "bench"}) EXPECT_NE(r.out.find(c), std::string::npos) << c;
  EXPECT_EQ(r.out.find("worker"), std::string::npos);
  for (const char* sub : {"tune --help", "db --help", "db show --help", "db export --help", "db import --help",
                          "db verify --help", "bench --help", "bench decode --help",
                          "bench prefill --help", "bench bwd --help", "warmup --help", "space --help",
                          "worker --help"}) {
    r = Cli(sub, dir_);
    EXPECT_EQ(r.code, 0) << sub << ": " << r.err;
  }
  r = Cli("tune --help", dir_);
  for (const char* opt : {"--preset", "--q-heads", "--kv-heads", "--head-dim", "--dtype", "--batch", "--seqlen",
                          "--probe", "--paged", "--budget", "--strategy", "--db", "--json"})
    EXPECT_NE(r.out.find(opt), std::string::npos) << opt;
  r = Cli("warmup --help", dir_);
  for (const char* opt : {"--arch", "--device-name", "--db", "--cache-dir", "--preset", "--key", "--dry-run", "--json",
                          "bwd"})
    EXPECT_NE(r.out.find(opt), std::string::npos) << opt;
  r = Cli("db show --help", dir_);
  for (const char* opt : {"--plot", "--json", "--db", "PARALLAX_DB", "none"})
    EXPECT_NE(r.out.find(opt), std::string::npos) << opt;
  r = Cli("bench --help", dir_);
  for (const char* sub : {"decode", "prefill", "bwd"}) EXPECT_NE(r.out.find(sub), std::string::npos) << sub;
  r = Cli("bench prefill --help", dir_);
  for (const char* opt : {"--shape", "--q-len", "--window", "--variant", "--probe", "--affine", "--dtype", "--reps",
                          "--device", "--db", "--no-verify", "--json", "--paged"})  // --paged: extend over pages
    EXPECT_NE(r.out.find(opt), std::string::npos) << opt;
  r = Cli("bench bwd --help", dir_);
  for (const char* opt : {"--shape", "--q-len", "--window", "--variant", "--probe", "--affine", "--dtype", "--reps",
                          "--device", "--db", "--no-verify", "--json", "tune --mode bwd"})
    EXPECT_NE(r.out.find(opt), std::string::npos) << opt;
  EXPECT_EQ(r.out.find("--paged"), std::string::npos) << "the backward reads contiguous K/V only";
}

TEST_F(CliTest, UsageErrorsAreOneLineAndExitTwo) {
  for (const char* args : {"tune", "tune --preset gpt-5", "tune --preset qwen3-0.6b --strategy annealing",
                           "tune --q-heads 16 --kv-heads 8", "tune --preset llama3-8b --reps 8,3,20",
                           "tune --preset llama3-8b --kv-heads 5", "tune --mode prefill --preset llama3-8b --paged 16",
                           "tune --mode prefill --preset llama3-8b --q-len 0", "tune --mode verify --preset llama3-8b",
                           "tune --preset llama3-8b --q-len 512", "db", "db show --db " "/nonexistent/x.db",
                           "tune --preset llama3-8b --budget 5x", "tune --preset llama3-8b --budget -3m",
                           "tune --preset llama3-8b --budget 5m30", "tune --preset llama3-8b --db none",
                           "db show --db none", "db verify --db none", "warmup --arch sm_90 --db none",
                           "warmup --arch sm_75 --preset llama3-8b", "warmup --device-name 'Voodoo 5' --preset llama3-8b",
                           "warmup --arch sm_80 --device-name H200 --preset llama3-8b",
                           "warmup --arch sm_90 --db none --key nonsense",
                           "db import /nonexistent/file.db", "bench decode --shape 1,2",
                           "bench decode --shape 1,1024,16,8,128 --variant nonsense", "bench prefill",
                           "bench prefill --shape 1,1024,16,8", "bench prefill --shape 1,1024,16,8,128 --q-len 1025",
                           "bench prefill --shape 1,1024,16,8,128 --q-len 0",
                           "bench prefill --shape 0,1024,16,8,128", "bench prefill --shape 1,1024,16,8,96",
                           "bench prefill --shape 1,1024,16,8,128 --paged 24",
                           "bench prefill --shape 1,1024,16,8,128 --window -1",
                           "bench prefill --shape 1,1024,16,8,128 --variant nonsense",
                           "bench prefill --shape 1,1024,16,8,128 --variant "
                           "decode-bf16-d128-h16x8-contig-nowin.learned-plain.mma-n64-w4-s2-splitauto-g1",
                           "bench bwd", "bench bwd --shape 1,1024,16,8", "bench bwd --shape 1,1024,16,8,128 --paged 16",
                           "bench bwd --shape 1,1024,16,8,128 --q-len 1025", "bench bwd --shape 1,1024,16,8,96",
                           "bench bwd --shape 1,1024,16,8,128 --window -1",
                           "bench bwd --shape 1,1024,16,8,128 --variant "
                           "prefill-bf16-d128-h16x8-contig-nowin.learned-plain.mma-m64-n64-w4-s2",
                           "warmup --arch sm_90 --db none --mode bwd --preset llama3-8b --paged 16",
                           "warmup --arch sm_90 --db none --mode backward --preset llama3-8b"}) {
    Result r = Cli(args, dir_);
    EXPECT_EQ(r.code, 2) << args << ": " << r.err;
    EXPECT_TRUE(OneErrorLine(r.err)) << args << ": '" << r.err << "'";
  }
}

TEST_F(CliTest, TuneWithoutAGpuFailsFastWithAClearMessage) {
  if (QueryDevice(0).ok()) GTEST_SKIP() << "a GPU is present";
  Result r = Cli("tune --preset qwen3-0.6b --budget 8 --db " + dir_ + "/t.db", dir_);
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_TRUE(OneErrorLine(r.err)) << r.err;
  EXPECT_NE(r.err.find("GPU"), std::string::npos) << r.err;
  EXPECT_LT(r.seconds, 20);
  r = Cli("bench decode --shape 8,4096,32,8,128", dir_);
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_NE(r.err.find("needs a GPU"), std::string::npos) << r.err;
  for (const char* args : {"bench prefill --shape 1,4096,32,8,128", "bench prefill --shape 2,4096,32,8,128 --q-len 512 "
                           "--window 1024 --probe none --dtype fp16 --json", "bench bwd --shape 4,4096,16,16,128",
                           "bench bwd --shape 2,4096,32,8,64 --q-len 512 --window 1024 --affine amplified --json"}) {
    r = Cli(args, dir_);
    EXPECT_EQ(r.code, 1) << args << ": " << r.err;
    EXPECT_TRUE(OneErrorLine(r.err)) << r.err;
    EXPECT_NE(r.err.find("bench needs a GPU"), std::string::npos) << r.err;
  }
}

TEST_F(CliTest, DbShowExportImportVerify) {
  const std::string db = MakeDb("a.db");
  Result r = Cli("db show --db " + db, dir_);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("b1-l1024"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("timeout 1"), std::string::npos) << r.out;

  r = Cli("db show --json --db " + db, dir_);
  ASSERT_EQ(r.code, 0) << r.err;
  nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["best_configs"].size(), 2u);
  EXPECT_EQ(j["measurements"]["total"], 3);
  EXPECT_EQ(j["measurements"]["timeout"], 1);
  EXPECT_EQ(j["devices"].size(), 1u);

  const std::string copy = dir_ + "/copy.db";
  r = Cli("db export " + copy + " --db " + db, dir_);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("measurements 3"), std::string::npos) << r.out;
  r = Cli("db export " + copy + " --db " + db, dir_);  // never overwrites
  EXPECT_EQ(r.code, 2);

  const std::string fresh = dir_ + "/fresh.db";
  r = Cli("db import " + copy + " --json --db " + fresh, dir_);
  ASSERT_EQ(r.code, 0) << r.err;
  j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["measurements"]["inserted"], 3);
  EXPECT_EQ(j["best_configs"]["inserted"], 2);
  r = Cli("db import " + copy + " --db " + fresh, dir_);  // again: nothing new
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("measurements"), std::string::npos);
  j = nlohmann::json::parse(Cli("db import " + copy + " --json --db " + fresh, dir_).out);
  EXPECT_EQ(j["measurements"]["inserted"], 0);
  EXPECT_EQ(j["measurements"]["skipped"], 3);

  r = Cli("db verify --db " + fresh, dir_);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find(": ok"), std::string::npos) << r.out;
  r = Cli("db verify --json --db " + fresh, dir_);
  EXPECT_TRUE(nlohmann::json::parse(r.out)["ok"].get<bool>());
}

TEST_F(CliTest, DbShowListsDamagedRunsAsUnreadable) {
  const std::string db = MakeDb("damaged.db");
  {
    std::unique_ptr<cache::Store> s = *cache::Store::Open(db);
    const int64_t device = (*s->ListDevices())[0].id;
    ASSERT_TRUE(s->StartRun(device, nlohmann::json::array()).ok());
    ASSERT_TRUE(s->StartRun(device, "x").ok());
    ASSERT_TRUE(s->StartRun(device, {{"problem_key", 42}, {"strategy", "guided"}}).ok());
    const int64_t raw = *s->StartRun(device, nlohmann::json::object());
    // Text that is no JSON and not UTF-8 either (the cache keeps it as a JSON string).
    absl::StatusOr<cache::Db> sql = cache::Db::Open(db);
    ASSERT_TRUE(sql.ok()) << sql.status();
    ASSERT_TRUE(sql->Exec("UPDATE tuning_runs SET params_json = CAST(X'ff7b' AS TEXT) WHERE id = " +
                          std::to_string(raw)).ok());
  }
  Result r = Cli("db show --db " + db, dir_);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("(unreadable params_json: array, not a JSON object)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("(unreadable params_json: string, not a JSON object)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("(unreadable params_json: problem_key is not a string)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("b1-l1024"), std::string::npos) << r.out;  // the rest is still shown

  r = Cli("db show --json --db " + db, dir_);
  ASSERT_EQ(r.code, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out, nullptr, /*allow_exceptions=*/false);
  ASSERT_FALSE(j.is_discarded()) << r.out;
  EXPECT_GE(j["runs"].size(), 4u);
}

TEST_F(CliTest, DbVerifyRejectsAFileThatIsNotADatabase) {
  const std::string bad = dir_ + "/bad.db";
  if (FILE* f = std::fopen(bad.c_str(), "w")) {
    std::fputs("definitely not sqlite, just some text long enough to look like a header............", f);
    std::fclose(f);
  }
  Result r = Cli("db verify --db " + bad, dir_);
  EXPECT_NE(r.code, 0);
  EXPECT_TRUE(OneErrorLine(r.err)) << r.err;
}

// `space` lists the wgmma prefill family for sm_90 / sm_90a (by --arch, or by --path wgmma on
// the default sm_90 limits) and never for sm_80; without --arch, --path all keeps to mma and
// fma as before the family existed.
TEST_F(CliTest, SpaceListsTheWgmmaFamilyForSm90Only) {
  Result r = Cli("space --help", dir_);
  ASSERT_EQ(r.code, 0) << r.err;
  for (const char* s : {"--path", "wgmma", "--arch", "sm_90a", "sm_80"}) EXPECT_NE(r.out.find(s), std::string::npos) << s;

  const std::string prefill = "space --mode prefill --q-heads 16 --kv-heads 8 --json";
  auto keys = [](const nlohmann::json& j) {
    std::vector<std::string> out;
    for (const auto& v : j["variants"]) out.push_back(v["key"].get<std::string>());
    return out;
  };
  auto count_wgmma = [](const std::vector<std::string>& ks) {
    return std::count_if(ks.begin(), ks.end(), [](const std::string& k) { return k.find(".wgmma-") != std::string::npos; });
  };
  r = Cli(prefill + " --path wgmma", dir_);
  ASSERT_EQ(r.code, 0) << r.err;
  nlohmann::json j = nlohmann::json::parse(r.out);
  std::vector<std::string> ks = keys(j);
  ASSERT_FALSE(ks.empty());
  EXPECT_EQ(count_wgmma(ks), static_cast<long>(ks.size()));
  EXPECT_EQ(j["arch"], "sm_90");
  EXPECT_EQ(j["paths"], nlohmann::json::array({"wgmma"}));

  r = Cli(prefill, dir_);  // no --arch: today's paths
  ASSERT_EQ(r.code, 0) << r.err;
  j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["paths"], nlohmann::json::array({"mma", "fma"}));
  EXPECT_EQ(count_wgmma(keys(j)), 0);
  const size_t portable = keys(j).size();
  ASSERT_GT(portable, 0u);

  for (const char* arch : {"sm_90", "sm_90a"}) {
    r = Cli(prefill + " --arch " + arch, dir_);
    ASSERT_EQ(r.code, 0) << arch << ": " << r.err;
    j = nlohmann::json::parse(r.out);
    ks = keys(j);
    EXPECT_EQ(j["paths"], nlohmann::json::array({"mma", "fma", "wgmma"})) << arch;
    EXPECT_GT(count_wgmma(ks), 0) << arch;
    EXPECT_EQ(ks.size() - count_wgmma(ks), portable) << arch;
  }

  r = Cli(prefill + " --arch sm_80", dir_);
  ASSERT_EQ(r.code, 0) << r.err;
  j = nlohmann::json::parse(r.out);
  EXPECT_EQ(count_wgmma(keys(j)), 0);
  EXPECT_GT(keys(j).size(), 0u);
  r = Cli(prefill + " --arch sm_80 --path wgmma", dir_);
  ASSERT_EQ(r.code, 0) << r.err;
  j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["count"], 0);
  ASSERT_EQ(j["skipped_paths"].size(), 1u);
  EXPECT_NE(j["skipped_paths"][0].get<std::string>().find("prefill_sm90 family does not run on sm_80"),
            std::string::npos) << j["skipped_paths"];
  r = Cli("space --mode prefill --arch sm_80 --path wgmma", dir_);  // text: the reason on a comment line
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("# left out path wgmma: the prefill_sm90 family does not run on sm_80"), std::string::npos)
      << r.out;
  r = Cli("space --mode decode --arch sm_80 --path wgmma --json", dir_);  // decode_sm90 runs on sm_90 only
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["count"], 0);
  r = Cli("space --mode prefill --path tensor", dir_);
  EXPECT_EQ(r.code, 2) << r.err;
}

TEST_F(CliTest, WorkerIsHiddenButRuns) {
  // Without a GPU the worker says why on its protocol channel and exits 1.
  if (QueryDevice(0).ok()) GTEST_SKIP() << "a GPU is present";
  Result r = Cli("worker --device 0 </dev/null", dir_);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.out.find("\"status\":\"failed\""), std::string::npos) << r.out;
}

// ---- reading never writes; numeric order; the plot ----

// Modification time to the nanosecond, with the bytes.
std::pair<std::string, int64_t> FileState(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return {"", -1};
  std::string bytes;
  if (FILE* f = std::fopen(path.c_str(), "rb")) {
    std::array<char, 4096> buf;
    size_t n;
    while ((n = std::fread(buf.data(), 1, buf.size(), f)) > 0) bytes.append(buf.data(), n);
    std::fclose(f);
  }
  return {bytes, int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec};
}

// `db show` (and verify, export) on an empty, a missing or an old-schema file: nothing is
// created, migrated or written; the old file is shown as it is.
TEST_F(CliTest, ReadingCommandsNeverCreateOrMigrate) {
  const std::string empty = dir_ + "/empty.db";
  std::fclose(std::fopen(empty.c_str(), "w"));
  const auto before = FileState(empty);
  Result r = Cli("db show --db " + empty, dir_);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("schema v0"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("best configs (0)"), std::string::npos) << r.out;
  r = Cli("db show --json --db " + empty, dir_);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["schema_version"], 0);
  EXPECT_EQ(Cli("db verify --db " + empty, dir_).code, 0);
  EXPECT_EQ(FileState(empty), before);
  EXPECT_FALSE(std::filesystem::exists(empty + "-wal"));

  const std::string missing = dir_ + "/missing.db";
  r = Cli("db show --db " + missing, dir_);
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(OneErrorLine(r.err)) << r.err;
  EXPECT_FALSE(std::filesystem::exists(missing));

  // A database the previous release wrote: schema v2, the driver in the fingerprint.
  const std::string old = MakeDb("old.db");
  {
    absl::StatusOr<cache::Db> sql = cache::Db::Open(old);
    ASSERT_TRUE(sql.ok());
    ASSERT_TRUE(sql->Exec("UPDATE devices SET fingerprint = 'FakeGPU|sm_90|sms=132|mem=0MiB|driver=13000|nvrtc=13.0';"
                          "PRAGMA user_version=2;").ok());
  }
  const auto old_before = FileState(old);
  r = Cli("db show --db " + old, dir_);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("schema v2, older than this build's"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("driver=13000"), std::string::npos) << r.out;
  EXPECT_EQ(Cli("db verify --db " + old, dir_).code, 0);
  EXPECT_EQ(Cli("db export " + dir_ + "/old-copy.db --db " + old, dir_).code, 0);
  EXPECT_EQ(FileState(old), old_before);
  absl::StatusOr<cache::Db> sql = cache::Db::Open(old);
  EXPECT_EQ(*sql->UserVersion(), 2);
}

// A database shipped where this user cannot write (a read-only directory or image): a WAL-mode
// file cannot get its -wal/-shm companions there, and is still read (as immutable).
TEST_F(CliTest, DatabaseInAReadOnlyDirectoryIsRead) {
  const std::string ro = dir_ + "/ro";
  std::filesystem::create_directories(ro);
  const std::string db = MakeDb("ro/tuner.db");  // WAL mode, closed cleanly: no companions left
  ASSERT_FALSE(std::filesystem::exists(db + "-wal"));
  const auto before = FileState(db);
  std::string prefix;
  if (::geteuid() == 0) {  // root writes anywhere: read as nobody instead
    prefix = "runuser -u nobody -- ";
    if (std::system((prefix + "test -r " + db + " -a -x " + PLX_SEARCH_CLI + " 2>/dev/null").c_str()) != 0)
      GTEST_SKIP() << "root, and nobody cannot reach the test files to read them as another user";
  }
  std::filesystem::permissions(ro, std::filesystem::perms::owner_write | std::filesystem::perms::group_write |
                                       std::filesystem::perms::others_write,
                               std::filesystem::perm_options::remove);
  const std::string cmd = prefix + PLX_SEARCH_CLI + " db show --json --db " + db + " >" + dir_ + "/o 2>" + dir_ + "/e";
  const int st = std::system(cmd.c_str());
  std::filesystem::permissions(ro, std::filesystem::perms::owner_write, std::filesystem::perm_options::add);
  ASSERT_TRUE(WIFEXITED(st));
  std::string out;
  if (FILE* f = std::fopen((dir_ + "/o").c_str(), "r")) {
    std::array<char, 4096> buf;
    size_t n;
    while ((n = std::fread(buf.data(), 1, buf.size(), f)) > 0) out.append(buf.data(), n);
    std::fclose(f);
  }
  ASSERT_EQ(WEXITSTATUS(st), 0) << FileState(dir_ + "/e").first;
  EXPECT_EQ(nlohmann::json::parse(out)["best_configs"].size(), 2u);
  EXPECT_EQ(FileState(db), before);
}

TEST_F(CliTest, DatabaseFromTheEnvironment) {
  const std::string db = MakeDb("env.db");
  const std::string cli = std::string(PLX_SEARCH_CLI);
  auto run = [&](const std::string& env, const std::string& args) {
    const std::string cmd = env + " " + cli + " " + args + " >" + dir_ + "/o 2>" + dir_ + "/e";
    const int st = std::system(cmd.c_str());
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  };
  EXPECT_EQ(run("PARALLAX_DB=" + db, "db show"), 0);
  EXPECT_EQ(run("PARALLAX_DB=" + dir_ + "/nope.db", "db show"), 2);
  EXPECT_EQ(run("PARALLAX_DB=none", "db show"), 2);
  EXPECT_EQ(run("PARALLAX_DB=none", "db show --db " + db), 0);  // the flag wins
  EXPECT_EQ(run("env -u PARALLAX_DB XDG_DATA_HOME=" + dir_ + "/xdg", "db show"), 2);
  std::filesystem::create_directories(dir_ + "/xdg/parallax");
  std::filesystem::copy_file(db, dir_ + "/xdg/parallax/tuner.db");
  EXPECT_EQ(run("env -u PARALLAX_DB XDG_DATA_HOME=" + dir_ + "/xdg", "db show"), 0);
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/nope.db"));
}

TEST_F(CliTest, DbShowOrdersBucketsByNumberAndPlotsTunedVsDefault) {
  const std::string db = MakeDb("order.db");
  {  // more buckets of the same problem: text order would put b1-l16384 before b1-l4096
    std::unique_ptr<TuningDb> t = *TuningDb::Open(db);
    const DeviceInfo d = FakeDevice();
    const TuneRequest req = QwenRequest();
    const std::string def = DefaultVariantKey(req.problem, req.algorithm);
    for (const auto& [bucket, us] : std::vector<std::pair<std::string, double>>{{"b1-l16384", 40}, {"b1-l4096", 25}}) {
      UnitKey u{*t->DeviceId(d), d.fingerprint(), *t->ProblemId(req.problem, req.algorithm),
                ProblemKey(req.problem, req.algorithm), bucket, 13000, std::nullopt};
      ASSERT_TRUE(t->Record(u, def, Outcome::Ok(us, us, us, 20)).ok());
      ASSERT_TRUE(t->StoreBest(u).ok());
    }
  }
  Result r = Cli("db show --db " + db, dir_);
  ASSERT_EQ(r.code, 0) << r.err;
  const size_t p1 = r.out.find("b1-l1024 "), p4 = r.out.find("b1-l4096 "), p16 = r.out.find("b1-l16384 "),
               p8 = r.out.find("b8-l4096 ");
  ASSERT_NE(p16, std::string::npos) << r.out;
  EXPECT_LT(p1, p4);
  EXPECT_LT(p4, p16);
  EXPECT_LT(p16, p8);
  EXPECT_NE(r.out.find("default_us"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("1.00x"), std::string::npos) << r.out;  // the default won: as fast as itself
  r = Cli("db show --json --db " + db, dir_);
  nlohmann::json j = nlohmann::json::parse(r.out);
  std::vector<std::string> buckets;
  for (const auto& b : j["best_configs"]) buckets.push_back(b["bucket"]);
  EXPECT_EQ(buckets, (std::vector<std::string>{"b1-l1024", "b1-l4096", "b1-l16384", "b8-l4096"}));
  EXPECT_DOUBLE_EQ(j["best_configs"][2]["default_us"].get<double>(), 40);

  const std::string svg = dir_ + "/plot.svg";
  r = Cli("db show --json --plot " + svg + " --db " + db, dir_);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_FALSE(nlohmann::json::parse(r.out, nullptr, false).is_discarded()) << "stdout stays JSON";
  const std::string text = FileState(svg).first;
  EXPECT_EQ(text.rfind("<?xml", 0), 0u);
  EXPECT_NE(text.find("<svg xmlns=\"http://www.w3.org/2000/svg\""), std::string::npos);
  EXPECT_NE(text.find("</svg>"), std::string::npos);
  auto count = [&](const std::string& what) {
    size_t n = 0;
    for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
    return n;
  };
  EXPECT_EQ(count("class=\"tuned\""), 4u);
  EXPECT_EQ(count("class=\"default\""), 4u);
  EXPECT_LT(text.find(">b1-l4096<"), text.find(">b1-l16384<"));
  EXPECT_NE(text.find("1.00x"), std::string::npos);
  // Nothing tuned: nothing to plot, said so.
  const std::string empty = dir_ + "/empty.db";
  std::fclose(std::fopen(empty.c_str(), "w"));
  r = Cli("db show --plot " + dir_ + "/none.svg --db " + empty, dir_);
  EXPECT_EQ(r.code, 1);
  EXPECT_TRUE(OneErrorLine(r.err)) << r.err;
}

// `tune --shard I/N`: 1-based I/N only, refused with exit 2 and one line naming --shard
// (before any GPU is looked for); --dry-run lists a shard's units and their expected costs
// without a GPU or a database, and the shards' lists partition the unsharded one.
TEST_F(CliTest, TuneShardIsCheckedAndListedByDryRun) {
  Result r = Cli("tune --help", dir_);
  ASSERT_EQ(r.code, 0) << r.err;
  for (const char* s : {"--shard", "I of N", "--dry-run", "db import"}) EXPECT_NE(r.out.find(s), std::string::npos) << s;
  const std::string base = "tune --preset llama3-8b --db " + dir_ + "/t.db";
  for (const char* bad : {"0/4", "5/4", "1/0", "2", "a/b", "1/4/2", "-1/4", "1.5/4", "''", "1/99999"}) {
    for (const char* dry : {"", " --dry-run"}) {
      r = Cli(base + " --shard " + bad + dry, dir_);
      EXPECT_EQ(r.code, 2) << bad << dry << ": " << r.err;
      EXPECT_TRUE(OneErrorLine(r.err)) << bad << ": '" << r.err << "'";
      EXPECT_NE(r.err.find("--shard"), std::string::npos) << r.err;
    }
  }
  EXPECT_EQ(Cli(base + " --shard", dir_).code, 2);  // no value

  r = Cli(base + " --dry-run --json", dir_);
  ASSERT_EQ(r.code, 0) << r.err;
  nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_TRUE(j["shard"].is_null());
  std::vector<std::string> all;
  for (const auto& u : j["units"]) all.push_back(u["bucket"]);
  ASSERT_EQ(all.size(), 16u);
  const double total = j["expected_total_s"];
  for (int n = 1; n <= 4; ++n) {
    std::multiset<std::string> seen;
    double sum = 0;
    for (int i = 1; i <= n; ++i) {
      const std::string shard = std::to_string(i) + "/" + std::to_string(n);
      r = Cli(base + " --dry-run --json --shard " + shard, dir_);
      ASSERT_EQ(r.code, 0) << shard << ": " << r.err;
      j = nlohmann::json::parse(r.out);
      EXPECT_EQ(j["shard"], shard);
      EXPECT_EQ(j["units_total"], 16);
      double mine = 0;
      for (const auto& u : j["units"]) {
        EXPECT_EQ(u["shard"], i);
        EXPECT_GT(u["expected_s"].get<double>(), 0);
        seen.insert(u["bucket"].get<std::string>());
        mine += u["expected_s"].get<double>();
      }
      EXPECT_NEAR(mine, j["expected_s"].get<double>(), 1e-6 * total);
      EXPECT_NEAR(mine, j["shard_expected_s"][i - 1].get<double>(), 1e-6 * total);
      sum += mine;
    }
    EXPECT_EQ(seen, std::multiset<std::string>(all.begin(), all.end())) << n << " shards";
    EXPECT_NEAR(sum, total, 1e-6 * total);
  }
  r = Cli(base + " --dry-run --shard 2/4", dir_);  // text: a header, then one line a unit
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("shard 2/4: "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("expected_s"), std::string::npos) << r.out;
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/t.db"));  // a dry run opens no database

  // More shards than buckets: the empty shard succeeds at once (no GPU needed) and leaves an
  // empty database that the merge step imports.
  const std::string empty = dir_ + "/empty-shard.db";
  r = Cli("tune --preset qwen3-0.6b --batch 1 --seqlen 1024 --shard 2/2 --db " + empty, dir_);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("shard 2/2 has no work"), std::string::npos) << r.err;
  EXPECT_EQ(Cli("db import " + empty + " --db " + dir_ + "/merged.db", dir_).code, 0);
  EXPECT_EQ(Cli("db verify --db " + empty, dir_).code, 0);
  r = Cli("tune --preset qwen3-0.6b --batch 1 --seqlen 1024 --shard 3/3 --json --db " + dir_ + "/e3.db", dir_);
  EXPECT_EQ(r.code, 0) << r.err;
  j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["shard"], "3/3");
  EXPECT_TRUE(j["buckets"].empty());
}

// Budgets and limits: one unit everywhere, with suffixes.
TEST(TuneArgs, Durations) {
  const std::vector<std::pair<std::string, double>> good = {
      {"90", 90}, {"30s", 30}, {"5m", 300}, {"1h", 3600}, {"1h30m", 5400}, {"1.5h", 5400}, {"0", 0},
      {"2m30s", 150}, {" 10m ", 600}, {"45sec", 45}, {"3min", 180}, {"0.5", 0.5}};
  for (const auto& [text, want] : good) {
    absl::StatusOr<double> d = ParseDuration(text);
    ASSERT_TRUE(d.ok()) << text << ": " << d.status();
    EXPECT_DOUBLE_EQ(*d, want) << text;
  }
  for (const char* bad : {"", "5x", "-1", "m", "5m30", "1..5s", "h1", "30 s", "inf", "nan"})
    EXPECT_FALSE(ParseDuration(bad).ok()) << bad;
  EXPECT_EQ(FormatDuration(1800), "30m");
  EXPECT_EQ(FormatDuration(5400), "1h30m");
  EXPECT_EQ(FormatDuration(600), "10m");
  EXPECT_EQ(FormatDuration(5), "5s");
  EXPECT_EQ(FormatDuration(0), "0");
  EXPECT_EQ(*ParseDuration(FormatDuration(86400)), 86400);
}

TEST_F(CliTest, BudgetsTakeDurations) {
  if (QueryDevice(0).ok()) GTEST_SKIP() << "a GPU is present: tune would run";
  // Accepted (the run then stops for want of a GPU, exit 1, not a usage error).
  for (const char* budget : {"90", "30s", "5m", "1h30m", "0"}) {
    Result r = Cli(std::string("tune --preset qwen3-0.6b --db ") + dir_ + "/t.db --budget " + budget, dir_);
    EXPECT_EQ(r.code, 1) << budget << ": " << r.err;
  }
  Result r = Cli("tune --help", dir_);
  EXPECT_NE(r.out.find("DURATION=30m"), std::string::npos) << r.out;
}

// `warmup` without a GPU: --arch (or a known --device-name) says what to compile for; the
// binaries land where that GPU's runtime looks (BinaryCacheEntryFor), a second run finds
// them, and the tuned configs of the database's devices of that arch are included.
TEST_F(CliTest, WarmupCompilesForAnArchWithoutAGpu) {
  const std::string cache = dir_ + "/kernels";
  const std::string base = "warmup --arch sm_80 --preset qwen3-0.6b --mode decode --db none --json --cache-dir " + cache;
  Result r = Cli(base, dir_);
  ASSERT_EQ(r.code, 0) << r.err;
  nlohmann::json j = nlohmann::json::parse(r.out);
  // The default and its eager one-launch twin (what an eager run of a split plan launches).
  EXPECT_EQ(j["compiled"], 2);
  ASSERT_EQ(j["variants"].size(), 2u);
  const TuneRequest req = QwenRequest();
  const Variant def = *Variant::Create(req.problem, req.algorithm, DefaultSchedule(req.problem, req.algorithm, 80));
  EXPECT_EQ(j["variants"][0]["key"], def.Key());
  EXPECT_EQ(j["variants"][1]["key"], OneLaunchTwin(def)->Key());
  EXPECT_EQ(j["variants"][1]["why"][0], "eager one-launch twin");
  const std::string want = BinaryCacheEntryFor(def.Key(), GenerateSource(def), "sm_80", NvrtcVersion(), cache).path;
  EXPECT_EQ(j["variants"][0]["path"], want);
  EXPECT_GT(std::filesystem::file_size(want), 1000u);
  EXPECT_NE(r.err.find("[2/2] compiled"), std::string::npos) << r.err;  // progress on stderr
  r = Cli(base, dir_);
  ASSERT_EQ(r.code, 0) << r.err;
  j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["cached"], 2);
  EXPECT_EQ(j["compiled"], 0);

  // Tuned configs of an sm_90 device, read-only: the dry run lists them with the defaults.
  const std::string db = MakeDb("tuned.db");
  const auto before = FileState(db);
  r = Cli("warmup --arch sm_90 --dry-run --json --mode decode --preset qwen3-0.6b --cache-dir " + cache + " --db " + db,
          dir_);
  ASSERT_EQ(r.code, 0) << r.err;
  j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["tuned_configs"], 2);
  bool tuned = false;
  for (const auto& v : j["variants"]) {
    EXPECT_EQ(v["status"], "missing");
    for (const auto& why : v["why"]) tuned = tuned || why.get<std::string>().rfind("tuned b1-l1024", 0) == 0;
  }
  EXPECT_TRUE(tuned) << r.out;
  EXPECT_EQ(FileState(db), before);
  // No device of that arch in the database and no problem: nothing to do, said so.
  r = Cli("warmup --arch sm_80 --cache-dir " + cache + " --db " + db, dir_);
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("nothing to warm up"), std::string::npos) << r.err;
  // Without a GPU and without --arch: the way out is named.
  if (!QueryDevice(0).ok()) {
    r = Cli("warmup --preset qwen3-0.6b --db none --cache-dir " + cache, dir_);
    EXPECT_EQ(r.code, 1);
    EXPECT_TRUE(OneErrorLine(r.err)) << r.err;
    EXPECT_NE(r.err.find("--arch"), std::string::npos) << r.err;
  }
}

// `warmup --mode bwd`: the backward's default for the named problem (training), on the arch;
// "all" stays the inference modes.
TEST_F(CliTest, WarmupNamesTheBackwardByMode) {
  const std::string base = "warmup --arch sm_90 --preset qwen3-0.6b --db none --dry-run --json --cache-dir " + dir_ +
                           "/kernels --mode ";
  Result r = Cli(base + "bwd", dir_);
  ASSERT_EQ(r.code, 0) << r.err;
  nlohmann::json j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j["variants"].size(), 1u) << r.out;
  TuneArgs a;
  a.preset = "qwen3-0.6b";
  a.mode = "bwd";
  const TuneRequest req = *MakeTuneRequest(a);
  const Variant def = *Variant::Create(req.problem, req.algorithm, DefaultSchedule(req.problem, req.algorithm, 90));
  EXPECT_EQ(j["variants"][0]["key"], def.Key());
  EXPECT_EQ(def.Key().rfind("bwd-", 0), 0u) << def.Key();
  EXPECT_EQ(j["variants"][0]["why"][0], "default bwd");
  EXPECT_EQ(j["variants"][0]["status"], "missing");
  r = Cli(base + "all", dir_);
  ASSERT_EQ(r.code, 0) << r.err;
  for (const auto& v : nlohmann::json::parse(r.out)["variants"])
    EXPECT_NE(v["key"].get<std::string>().rfind("bwd-", 0), 0u) << v["key"];
}

TEST(TuneArgs, PresetsAndGrid) {
  TuneArgs a;
  a.preset = "llama3-8b";
  absl::StatusOr<TuneRequest> r = MakeTuneRequest(a);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->problem.num_q_heads, 32);
  EXPECT_EQ(r->problem.num_kv_heads, 8);
  EXPECT_EQ(r->problem.head_dim, 128);
  EXPECT_EQ(r->buckets.size(), 16u);
  a.preset = "qwen3-1.7b";
  a.batch = {3, 4, 100};
  a.seqlen = {1000, 1024, 5000};
  a.paged = 16;
  r = MakeTuneRequest(a);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->problem.num_q_heads, 16);
  EXPECT_EQ(r->problem.kv_layout, KvLayout::kPaged);
  EXPECT_EQ(r->problem.page_size, 16);
  ASSERT_EQ(r->buckets.size(), 4u);  // {4, 128} x {1024, 8192}
  EXPECT_EQ(ToString(r->buckets[0]), "b4-l1024");
  EXPECT_EQ(ToString(r->buckets[3]), "b128-l8192");
  a = TuneArgs{};
  a.q_heads = 16;
  a.kv_heads = 8;
  EXPECT_FALSE(MakeTuneRequest(a).ok());  // head dim missing
  a.head_dim = 96;
  EXPECT_FALSE(MakeTuneRequest(a).ok());
  EXPECT_NE(DefaultDbPath().find("parallax/tuner.db"), std::string::npos);
}

// Prefill buckets: batch x q_len query tokens and the seqlen context (PrefillBucketFor).
TEST(TuneArgs, PrefillGrid) {
  TuneArgs a;
  a.mode = "prefill";
  a.preset = "llama3-8b";
  a.batch = {1, 4};
  a.seqlen = {4096, 16384};
  absl::StatusOr<TuneRequest> r = MakeTuneRequest(a);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->problem.mode, Mode::kPrefill);
  std::vector<std::string> got;
  for (const ShapeBucket& b : r->buckets) got.push_back(ToString(b));
  EXPECT_EQ(got, (std::vector<std::string>{"t4096-l4096", "t16384-l16384", "t16384-l4096", "t65536-l16384"}));
  // Chunks: q_len above a seqlen is skipped for it; duplicates (1 x 2048 = 4 x 512) dropped.
  a.q_len = {512, 2048, 8192};
  a.seqlen = {4096};
  r = MakeTuneRequest(a);
  ASSERT_TRUE(r.ok()) << r.status();
  got.clear();
  for (const ShapeBucket& b : r->buckets) got.push_back(ToString(b));
  EXPECT_EQ(got, (std::vector<std::string>{"t512-l4096", "t2048-l4096", "t8192-l4096"}));
  // Errors name the option.
  for (auto [mutate, option] : std::vector<std::pair<std::function<void(TuneArgs&)>, std::string>>{
           {[](TuneArgs& x) { x.paged = 16; }, "--paged"},
           {[](TuneArgs& x) { x.q_len = {0}; }, "--q-len 0"},
           {[](TuneArgs& x) { x.q_len = {100000}; }, "--q-len"},
           {[](TuneArgs& x) { x.mode = "train"; }, "--mode train"},
           {[](TuneArgs& x) { x.mode = "decode"; }, "--q-len: decode takes one value"}}) {
    TuneArgs b = a;
    mutate(b);
    absl::StatusOr<TuneRequest> bad = MakeTuneRequest(b);
    EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument) << option;
    EXPECT_NE(bad.status().message().find(option), std::string::npos) << bad.status();
  }
}

// Decode's --q-len: one value, the query tokens per sequence of a multi-token decode problem
// (decode buckets, not prefill's).
TEST(TuneArgs, DecodeQueryTokensMakeAMultiTokenProblem) {
  TuneArgs a;
  a.mode = "decode";
  a.preset = "llama3-8b";
  a.batch = {1, 8};
  a.seqlen = {16384};
  a.q_len = {8};
  absl::StatusOr<TuneRequest> r = MakeTuneRequest(a);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->problem.queries, 8);
  EXPECT_EQ(ProblemKey(r->problem, r->algorithm), "decode-bf16-d128-h32x8-contig-nowin-q8.learned-plain");
  EXPECT_FALSE(IsPrefillBucket(r->buckets.front()));
  for (int bad : {0, 17}) {
    a.q_len = {bad};
    absl::StatusOr<TuneRequest> e = MakeTuneRequest(a);
    ASSERT_FALSE(e.ok()) << bad;
    EXPECT_NE(e.status().message().find("1..16"), std::string::npos) << e.status();
  }
  a.q_len = {1};  // one token: the ordinary decode problem
  r = MakeTuneRequest(a);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->problem.queries, 1);
}

// The backward (mode bwd): one spelling, the key's mode token; prefill's buckets and chunks;
// contiguous K/V only.
TEST(TuneArgs, BackwardGrid) {
  for (Mode m : {Mode::kDecode, Mode::kPrefill, Mode::kBackward}) {
    absl::StatusOr<Mode> back = ParseModeFlag(ToString(m));
    ASSERT_TRUE(back.ok()) << ToString(m) << ": " << back.status();
    EXPECT_EQ(*back, m);
  }
  for (const char* other : {"backward", "BWD", "train", "", "prefill-bwd"}) {
    absl::StatusOr<Mode> m = ParseModeFlag(other);
    EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument) << other;
    EXPECT_NE(m.status().message().find("expected decode, prefill or bwd"), std::string::npos) << m.status();
  }
  TuneArgs a;
  a.mode = "bwd";
  a.preset = "qwen3-0.6b";
  a.batch = {1, 4};
  a.seqlen = {4096};
  absl::StatusOr<TuneRequest> r = MakeTuneRequest(a);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->problem.mode, Mode::kBackward);
  EXPECT_EQ(ProblemKey(r->problem, r->algorithm), "bwd-bf16-d128-h16x8-contig-nowin.learned-plain");
  std::vector<std::string> got;
  for (const ShapeBucket& b : r->buckets) got.push_back(ToString(b));
  EXPECT_EQ(got, (std::vector<std::string>{"t4096-l4096", "t16384-l4096"}));
  a.q_len = {512};  // a chunk's backward, at the end of the context
  r = MakeTuneRequest(a);
  ASSERT_TRUE(r.ok()) << r.status();
  got.clear();
  for (const ShapeBucket& b : r->buckets) got.push_back(ToString(b));
  EXPECT_EQ(got, (std::vector<std::string>{"t512-l4096", "t2048-l4096"}));
  a.paged = 16;
  absl::StatusOr<TuneRequest> paged = MakeTuneRequest(a);
  EXPECT_EQ(paged.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(paged.status().message().find("--paged: bwd reads contiguous K/V only"), std::string::npos)
      << paged.status();
}

// `tune --mode bwd` as a user runs it: the dry run plans the prefill buckets of the bwd
// problem with costs from the backward's cost model, the spelling "backward" is a usage error, and with the test build's fake GPU and worker a tune writes
// bwd winners that `db show` lists.
TEST_F(CliTest, TuneBackward) {
  Result r = Cli("tune --help", dir_);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("bwd"), std::string::npos) << r.out;
  const std::string grid = " --preset qwen3-0.6b --batch 1,4 --seqlen 4096 --dry-run --json";
  r = Cli("tune --mode bwd" + grid, dir_);
  ASSERT_EQ(r.code, 0) << r.err;
  nlohmann::json bwd = nlohmann::json::parse(r.out);
  r = Cli("tune --mode prefill" + grid, dir_);
  ASSERT_EQ(r.code, 0) << r.err;
  nlohmann::json fwd = nlohmann::json::parse(r.out);
  ASSERT_EQ(bwd["units"].size(), 2u) << bwd.dump();
  ASSERT_EQ(fwd["units"].size(), 2u) << fwd.dump();
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(bwd["units"][i]["bucket"], fwd["units"][i]["bucket"]);
    EXPECT_GT(bwd["units"][i]["expected_s"].get<double>(), 0);
  }
  EXPECT_NE(bwd.dump().find("bwd-bf16-d128-h16x8-contig-nowin.learned-plain"), std::string::npos) << bwd.dump();
  r = Cli("tune --mode backward" + grid, dir_);
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_TRUE(OneErrorLine(r.err)) << r.err;
  r = Cli("tune --mode bwd --paged 16" + grid, dir_);
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("--paged: bwd"), std::string::npos) << r.err;

  const std::string db = dir_ + "/bwd.db";
  ::setenv("PARALLAX_TEST_FAKE_GPU", "FakeGPU", 1);
  ::setenv("PARALLAX_TEST_WORKER", PLX_FAKE_WORKER, 1);
  r = Cli("tune --mode bwd --preset qwen3-0.6b --batch 1 --seqlen 4096 --compile-threads 1 --json --db " + db, dir_);
  ::unsetenv("PARALLAX_TEST_FAKE_GPU");
  ::unsetenv("PARALLAX_TEST_WORKER");
  ASSERT_EQ(r.code, 0) << r.err;
  nlohmann::json j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j["buckets"].size(), 1u) << j.dump();
  const std::string best = j["buckets"][0]["best"];
  EXPECT_EQ(j["buckets"][0]["bucket"], "t4096-l4096");
  EXPECT_EQ(best.rfind("bwd-bf16-d128-h16x8-contig-nowin.learned-plain.mma-", 0), 0u) << best;
  r = Cli("db show --json --db " + db, dir_);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find(best), std::string::npos) << r.out;

  r = Cli("space --mode bwd --q-heads 16 --kv-heads 8 --arch sm_90 --json", dir_);
  ASSERT_EQ(r.code, 0) << r.err;
  j = nlohmann::json::parse(r.out);
  ASSERT_GT(j["count"].get<int>(), 0);
  for (const auto& v : j["variants"]) EXPECT_EQ(v["key"].get<std::string>().rfind("bwd-", 0), 0u) << v["key"];
}

}  // namespace
}  // namespace parallax::search
