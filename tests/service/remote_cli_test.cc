// `parallax remote` as a user runs it against a server in this process: a known GPU's name
// alone (--device-name H200, --list-devices), every missing field named at once, tables by
// default and JSON with --json (list, import), buckets in numeric order, budgets as durations,
// and --help on every action.
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "parallax/cache/store.h"
#include "parallax/codegen/kernel_family.h"
#include "parallax/runtime/known_devices.h"
#include "parallax/runtime/nvrtc_compiler.h"
#include "parallax/service/validate.h"
#include "server_fixture.h"

namespace parallax::service::testing {
namespace {

struct Result {
  int code = -1;
  std::string out, err;
};

std::string Slurp(const std::string& path) {
  std::string s;
  if (FILE* f = std::fopen(path.c_str(), "r")) {
    std::array<char, 4096> buf;
    size_t n;
    while ((n = std::fread(buf.data(), 1, buf.size(), f)) > 0) s.append(buf.data(), n);
    std::fclose(f);
  }
  return s;
}

bool OneErrorLine(const std::string& err) {
  return err.rfind("parallax: ", 0) == 0 && err.find('\n') == err.size() - 1;
}

class RemoteCliTest : public ServerTest {
 protected:
  Result Cli(const std::string& args) {
    const std::string out = dir_ + "/stdout", err = dir_ + "/stderr";
    const std::string cmd = std::string(PLX_PARALLAX_CLI) + " " + args + " >" + out + " 2>" + err;
    const int status = std::system(cmd.c_str());
    Result r;
    r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r.out = Slurp(out);
    r.err = Slurp(err);
    return r;
  }
  std::string Server() const { return " --server " + server_->address(); }

  // A best config for p on `fingerprint`, as a tuner on that GPU would have stored it.
  void SeedOn(cache::Store& s, const std::string& fingerprint, const v1::Problem& p, const std::string& key,
              double us) {
    absl::StatusOr<ProblemSpec> spec = ValidateProblem(p, "problem");
    ASSERT_TRUE(spec.ok()) << spec.status();
    cache::DeviceInfo d;
    d.fingerprint = fingerprint;
    d.name = fingerprint.substr(0, fingerprint.find('|'));
    ASSERT_TRUE(s.UpsertDevice(d).ok());
    cache::BestConfig c;
    c.device_fingerprint = fingerprint;
    c.problem_key = spec->problem_key;
    c.bucket = spec->bucket;
    c.variant_key = key.empty() ? FakeBackend::BestKeyFor(*spec) : key;
    c.median_us = us;
    c.generator_version = kGeneratorVersion;
    c.nvrtc_version = NvrtcVersionNumber(NvrtcVersion());
    ASSERT_TRUE(s.SetBestConfig(c).ok());
  }
};

TEST_F(RemoteCliTest, ListDevicesNeedsNoServer) {
  Result r = Cli("remote get --list-devices --server 127.0.0.1:1");
  ASSERT_EQ(r.code, 0) << r.err;
  for (const char* s : {"NVIDIA H200", "NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-80GB", "sm_90", "132"})
    EXPECT_NE(r.out.find(s), std::string::npos) << s << "\n" << r.out;
  r = Cli("remote --json get --list-devices");
  ASSERT_EQ(r.code, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  ASSERT_TRUE(j.is_array());
  EXPECT_EQ(j.size(), KnownDevices().size());
  EXPECT_EQ(j[0]["name"], "NVIDIA H200");
  EXPECT_EQ(j[0]["fingerprint"], DeviceInfoOf(KnownDevices()[0]).fingerprint());
}

TEST_F(RemoteCliTest, UnknownGpuNamesEveryMissingFieldAtOnce) {
  const std::string get = "remote get --mode decode --server 127.0.0.1:1 ";
  Result r = Cli(get + "--device-name 'Voodoo 5'");
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(OneErrorLine(r.err)) << r.err;
  for (const char* f : {"--list-devices", "--cc", "--sms", "--mem-mib"}) EXPECT_NE(r.err.find(f), std::string::npos) << f;
  r = Cli(get + "--device-name 'Voodoo 5' --cc 9.0");
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(r.err.find("--cc"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("--sms, --mem-mib"), std::string::npos) << r.err;
  r = Cli(get + "--device-name 'Voodoo 5' --cc nine --sms -1 --mem-mib 1024");
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(OneErrorLine(r.err)) << r.err;
  EXPECT_NE(r.err.find("--cc 'nine'"), std::string::npos) << r.err;  // both bad values, one line
  EXPECT_NE(r.err.find("--sms -1"), std::string::npos) << r.err;
  r = Cli(get + "--cc 9.0");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--device-name"), std::string::npos) << r.err;
  r = Cli("remote get --device-name H200 --server 127.0.0.1:1");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--mode"), std::string::npos) << r.err;
}

// A known GPU's name alone gives the identity its tuned configs are filed under: the H200
// tuned on its host (driver 13000 there) is found EXACT from a laptop without a GPU, and a
// field given by hand overrides the table (another SM count: another device).
TEST_F(RemoteCliTest, KnownGpuNameAloneFindsItsTunedConfig) {
  const v1::Problem p = DecodeProblem(4, 4096);
  DeviceInfo h200 = DeviceInfoOf(*FindKnownDevice("H200"));
  h200.mem_bytes = int64_t{143155} << 20;  // what the driver reports there
  h200.driver_version = 13000;
  SeedOn(store(), h200.fingerprint(), p, "", 7.5);
  StartServer();
  const std::string key = FakeBackend::BestKeyFor(*ValidateProblem(p, "problem"));
  for (const char* name : {"H200", "h200", "'NVIDIA H200'"}) {
    Result r = Cli("remote get --mode decode --batch 4 --seqlen 4096 --device-name " + std::string(name) + Server());
    ASSERT_EQ(r.code, 0) << name << ": " << r.err;
    EXPECT_NE(r.out.find(key), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("EXACT"), std::string::npos) << r.out;
  }
  Result r = Cli("remote get --json --mode decode --batch 4 --seqlen 4096 --device-name H200 --driver 13010" + Server());
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["match"], "MATCH_EXACT");
  r = Cli("remote get --json --mode decode --batch 4 --seqlen 4096 --device-name H200 --sms 114" + Server());
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["match"], "MATCH_DEFAULT");
}

// `remote get --mode bwd` asks for the backward (MODE_BACKWARD): its tuned key where the
// server has one, the bwd default where it has none; the forward's rows are not the answer.
TEST_F(RemoteCliTest, BackwardModeAsksForTheBackward) {
  v1::Problem bwd = PrefillProblem(1, 4096);
  bwd.set_mode(v1::MODE_BACKWARD);
  absl::StatusOr<ProblemSpec> spec = ValidateProblem(bwd, "problem");
  ASSERT_TRUE(spec.ok()) << spec.status();
  Schedule s = DefaultSchedule(spec->problem, spec->algorithm);
  s.block_m = 16;  // tells the seeded row apart from the default
  const std::string tuned = Variant::Create(spec->problem, spec->algorithm, s)->Key();
  DeviceInfo h200 = DeviceInfoOf(*FindKnownDevice("H200"));
  h200.mem_bytes = int64_t{143155} << 20;
  SeedOn(store(), h200.fingerprint(), bwd, tuned, 900);
  SeedOn(store(), h200.fingerprint(), PrefillProblem(1, 4096), "", 300);
  StartServer();
  Result r = Cli("remote get --json --mode bwd --batch 1 --seqlen 4096 --device-name H200" + Server());
  ASSERT_EQ(r.code, 0) << r.err;
  nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["match"], "MATCH_EXACT") << r.out;
  EXPECT_EQ(j["variant_key"], tuned) << r.out;
  r = Cli("remote get --json --mode bwd --probe none --batch 1 --seqlen 4096 --device-name H200" + Server());
  ASSERT_EQ(r.code, 0) << r.err;
  j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["match"], "MATCH_DEFAULT") << r.out;
  EXPECT_EQ(j["variant_key"].get<std::string>().rfind("bwd-bf16-d128-h32x8-contig-nowin.none-plain.wgmma-", 0), 0u)
      << r.out;
  r = Cli("remote get --mode backward --batch 1 --seqlen 4096 --device-name H200" + Server());
  EXPECT_EQ(r.code, 2) << r.err;
}

TEST_F(RemoteCliTest, ListIsANumericTableAndImportIsNoRawJson) {
  const std::string fp = DeviceInfoOf(*FindKnownDevice("H100")).fingerprint();
  for (int batch : {1, 16, 2}) SeedOn(store(), fp, DecodeProblem(batch, 4096), "", batch);
  StartServer();
  Result r = Cli("remote list" + Server());
  ASSERT_EQ(r.code, 0) << r.err;
  const size_t b1 = r.out.find("b1-l4096"), b2 = r.out.find("b2-l4096"), b16 = r.out.find("b16-l4096");
  ASSERT_NE(b16, std::string::npos) << r.out;
  EXPECT_LT(b1, b2);
  EXPECT_LT(b2, b16);
  EXPECT_EQ(r.out.find('{'), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("median_us"), std::string::npos) << r.out;
  r = Cli("remote list --json" + Server());
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["configs"].size(), 3u);

  // An export of another database, merged through the server.
  const std::string src = dir_ + "/other.db";
  {
    absl::StatusOr<std::unique_ptr<cache::Store>> s = cache::Store::Open(src);
    ASSERT_TRUE(s.ok()) << s.status();
    SeedOn(**s, fp, DecodeProblem(64, 4096), "", 9);
  }
  r = Cli("remote import " + src + Server());
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out.find('{'), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("merged"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("best_configs"), std::string::npos) << r.out;
  r = Cli("remote import --json " + src + Server());  // again, as JSON: nothing new
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["best_configs"]["inserted"], "0");  // int64 prints as a string
}

TEST_F(RemoteCliTest, TuneBudgetIsADuration) {
  StartServer();  // no GPU backend: a well-formed job is refused by the server, not the flags
  for (const char* bad : {"5x", "0", "-1m"}) {
    Result r = Cli("remote tune --mode decode --budget " + std::string(bad) + Server());
    EXPECT_EQ(r.code, 2) << bad << ": " << r.err;
    EXPECT_TRUE(OneErrorLine(r.err)) << r.err;
  }
  for (const char* good : {"90", "90s", "5m", "1h"}) {
    Result r = Cli("remote tune --mode decode --budget " + std::string(good) + Server());
    EXPECT_EQ(r.code, 1) << good << ": " << r.err;
    EXPECT_NE(r.err.find("FAILED_PRECONDITION"), std::string::npos) << r.err;
  }
  Result r = Cli("remote tune --help");
  EXPECT_NE(r.out.find("DURATION=10m"), std::string::npos) << r.out;
}

TEST_F(RemoteCliTest, HelpOnEveryCommand) {
  for (const char* sub : {"--help", "gen --help", "compile --help", "space --help", "bench --help", "tune --help",
                          "warmup --help", "db --help", "db show --help", "serve --help", "remote --help",
                          "remote get --help", "remote tune --help", "remote watch --help", "remote cancel --help",
                          "remote list --help", "remote export --help", "remote import --help",
                          "remote health --help"}) {
    Result r = Cli(sub);
    EXPECT_EQ(r.code, 0) << sub << ": " << r.err;
    EXPECT_NE(r.out.find("Usage:"), std::string::npos) << sub;
  }
  Result r = Cli("serve --help");
  for (const char* s : {"--db", "PARALLAX_DB", "--max-budget DURATION"}) EXPECT_NE(r.out.find(s), std::string::npos) << s;
  r = Cli("remote frobnicate");
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(OneErrorLine(r.err)) << r.err;
}

}  // namespace
}  // namespace parallax::service::testing
