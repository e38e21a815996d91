// Bearer-token auth on every RPC, TLS, loopback-only default, health checking.
#include <cstdlib>
#include <fstream>

#include "server_fixture.h"

namespace parallax::service::testing {
namespace {

class SecurityTest : public ServerTest {};

constexpr char kToken[] = "s3cret-t0ken-long-enough";

// Every RPC, each reduced to its status.
std::vector<std::pair<std::string, absl::Status>> CallEverything(Client& c, const std::string& dir) {
  std::vector<std::pair<std::string, absl::Status>> out;
  out.emplace_back("GetBestConfig", c.GetBestConfig(ServerTest::Lookup(ServerTest::DecodeProblem())).status());
  out.emplace_back("SubmitTuning", c.SubmitTuning(ServerTest::Submit({ServerTest::DecodeProblem()})).status());
  out.emplace_back("WatchJob", c.WatchJob(1, nullptr).status());
  out.emplace_back("CancelJob", c.CancelJob(1).status());
  out.emplace_back("ListJobs", c.ListJobs({}).status());
  out.emplace_back("ListConfigs", c.ListConfigs({}).status());
  static int n = 0;
  const std::string file = dir + "/export-" + std::to_string(n++) + ".db";
  out.emplace_back("ExportResults", c.ExportResults(file).status());
  std::ofstream(dir + "/import.db") << "SQLite format 3" << '\0' << "junk";
  out.emplace_back("ImportResults", c.ImportResults(dir + "/import.db").status());
  return out;
}

TEST_F(SecurityTest, EveryRpcNeedsTheBearerToken) {
  ServerOptions o;
  o.auth_token = kToken;
  StartServer(o, /*fake=*/true);
  for (const std::string& token : {std::string(), std::string("wrong"), std::string(kToken) + "x"}) {
    ClientOptions co;
    co.token = token;
    auto c = NewClient(co);
    for (const auto& [rpc, status] : CallEverything(*c, dir_))
      EXPECT_TRUE(absl::IsUnauthenticated(status)) << rpc << " with token '" << token << "': " << status;
  }
  ClientOptions co;
  co.token = kToken;
  auto c = NewClient(co);
  for (const auto& [rpc, status] : CallEverything(*c, dir_))
    EXPECT_FALSE(absl::IsUnauthenticated(status)) << rpc << ": " << status;
  // Health checks stay open: load balancers probe without credentials.
  EXPECT_TRUE(*NewClient()->CheckHealth());
}

TEST_F(SecurityTest, HealthCheckReportsServing) {
  StartServer();
  auto c = NewClient();
  EXPECT_TRUE(*c->CheckHealth(kTunerServiceName));
  EXPECT_TRUE(*c->CheckHealth(""));
  EXPECT_TRUE(absl::IsNotFound(c->CheckHealth("no.such.Service").status()));
}

TEST_F(SecurityTest, NonLoopbackNeedsExplicitConsent) {
  EXPECT_TRUE(IsLoopbackAddress("127.0.0.1:50051"));
  EXPECT_TRUE(IsLoopbackAddress("localhost:1"));
  EXPECT_TRUE(IsLoopbackAddress("[::1]:0"));
  EXPECT_TRUE(IsLoopbackAddress("unix:/tmp/x.sock"));
  EXPECT_FALSE(IsLoopbackAddress("0.0.0.0:50051"));
  EXPECT_FALSE(IsLoopbackAddress("[::]:50051"));
  EXPECT_FALSE(IsLoopbackAddress("10.1.2.3:50051"));
  ServerOptions o;
  o.listen = "0.0.0.0:0";
  o.db_path = db_path_;
  absl::StatusOr<std::unique_ptr<Server>> s = Server::Start(o, std::make_unique<NoGpuBackend>());
  EXPECT_TRUE(absl::IsPermissionDenied(s.status())) << s.status();
}

TEST_F(SecurityTest, TlsWithThrowawayCertificate) {
  if (std::system("command -v openssl >/dev/null 2>&1") != 0) GTEST_SKIP() << "openssl not installed";
  const std::string cert = dir_ + "/cert.pem", key = dir_ + "/key.pem";
  const std::string cmd = "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost "
                          "-addext subjectAltName=IP:127.0.0.1,DNS:localhost -keyout " +
                          key + " -out " + cert + " >/dev/null 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  ServerOptions o;
  o.tls_cert_pem = *ReadTextFile(cert);
  o.tls_key_pem = *ReadTextFile(key);
  o.auth_token = kToken;
  StartServer(o);

  ClientOptions tls;
  tls.tls_root_cert_pem = o.tls_cert_pem;
  tls.token = kToken;
  auto c = NewClient(tls);
  absl::StatusOr<v1::GetBestConfigResponse> r = c->GetBestConfig(Lookup(DecodeProblem()));
  EXPECT_TRUE(r.ok()) << r.status();

  ClientOptions plain;
  plain.token = kToken;
  EXPECT_TRUE(absl::IsUnavailable(NewClient(plain)->GetBestConfig(Lookup(DecodeProblem())).status()));
}

TEST_F(SecurityTest, TlsCertificateWithoutKeyIsRefused) {
  ServerOptions o;
  o.listen = "127.0.0.1:0";
  o.db_path = db_path_;
  o.tls_cert_pem = "x";
  EXPECT_TRUE(absl::IsInvalidArgument(Server::Start(o, std::make_unique<NoGpuBackend>()).status()));
}

}  // namespace
}  // namespace parallax::service::testing
