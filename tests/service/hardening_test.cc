// Issue #10's smaller items: strict page tokens, bounded echoes, no server paths in answers,
// loopback by address, token length, reflection with a token, unparsable requests,
// throttled protobuf logs, pools that survive throwing tasks.
#include <sys/wait.h>
#include <unistd.h>

#include <condition_variable>
#include <fstream>
#include <mutex>

#include <grpcpp/generic/generic_stub.h>

#include "client_errors.h"
#include "executor.h"
#include "parallax/cache/store.h"
#include "protobuf_log.h"
#include "server_fixture.h"

namespace parallax::service::testing {
namespace {

class HardeningTest : public ServerTest {};

// A unary call with hand-made request bytes (any method: a server-streaming one answers its
// status the same way).
grpc::Status RawCall(const std::shared_ptr<grpc::Channel>& channel, const std::string& method,
                     const std::string& bytes, const std::string& token = "", std::string* reply = nullptr) {
  grpc::Slice slice(bytes);
  grpc::ByteBuffer request(&slice, 1), response;
  grpc::GenericStub stub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  grpc::Status status;
  stub.UnaryCall(&ctx, method, grpc::StubOptions(), &request, &response, [&](grpc::Status s) {
    std::lock_guard lock(mu);
    status = std::move(s);
    done = true;
    cv.notify_one();
  });
  std::unique_lock lock(mu);
  cv.wait(lock, [&] { return done; });
  if (reply && status.ok()) {
    std::vector<grpc::Slice> slices;
    (void)response.Dump(&slices);
    for (const grpc::Slice& s : slices) reply->append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  return status;
}

v1::ListConfigsRequest WithToken(const std::string& token) {
  v1::ListConfigsRequest r;
  r.set_page_token(token);
  return r;
}

TEST_F(HardeningTest, PageTokensAreStrictAndNeverEchoedWhole) {
  StartServer();
  auto c = NewClient();
  for (const char* token : {"", "0", "17", "999999999999999999"})  // 18 digits: past the end, empty
    EXPECT_TRUE(c->ListConfigs(WithToken(token)).ok()) << "'" << token << "'";
  const std::string huge(8192, '1');
  for (const std::string& token : {std::string(" +5 "), std::string("+5"), std::string("-1"), std::string("5 "),
                                  std::string("0x10"), std::string("9223372036854775807"),
                                  std::string("18446744073709551616"), huge}) {
    absl::StatusOr<v1::ListConfigsResponse> r = c->ListConfigs(WithToken(token));
    EXPECT_TRUE(absl::IsInvalidArgument(r.status())) << "'" << token.substr(0, 30) << "': " << r.status();
    EXPECT_NE(r.status().message().find("not a token from ListConfigs"), absl::string_view::npos) << r.status();
    EXPECT_LT(r.status().message().size(), 160u) << r.status();
  }
  absl::StatusOr<v1::ListConfigsResponse> r = c->ListConfigs(WithToken(huge));
  EXPECT_NE(r.status().message().find("...(8192 bytes)"), absl::string_view::npos) << r.status();
}

TEST(ClientErrors, HidePathsAndBoundEchoes) {
  const ClientErrors errors({"/srv/plx/tuner.db", "/srv/plx"});
  bool hid = false;
  EXPECT_EQ(errors.ScrubMessage("import of /srv/plx/.parallax-import-12-0.db into /srv/plx/tuner.db failed: "
                                "row 3 of best_configs",
                                &hid),
            "import of <server-path> into <server-path> failed: row 3 of best_configs");
  EXPECT_TRUE(hid);
  EXPECT_EQ(errors.ScrubMessage("cannot open '/var/lib/other/x.db': no such file"),
            "cannot open '<server-path>': no such file");
  EXPECT_EQ(errors.ScrubMessage("path=/tmp/a/b, done"), "path=<server-path>, done");
  EXPECT_EQ(errors.ScrubMessage("budget_seconds=5: must be in (0, 86400]", &hid),
            "budget_seconds=5: must be in (0, 86400]");
  EXPECT_FALSE(hid);
  const std::string key(2 << 20, 'k');
  const std::string scrubbed = errors.ScrubMessage("variant_key '" + key + "' is refused\n\tsee log");
  EXPECT_LT(scrubbed.size(), 200u);
  EXPECT_NE(scrubbed.find("...(2097154 bytes)"), std::string::npos) << scrubbed;
  EXPECT_EQ(scrubbed.find('\n'), std::string::npos);
  std::string many;
  for (int i = 0; i < 1000; ++i) many += "word ";
  EXPECT_LE(errors.ScrubMessage(many).size(), kMaxClientMessageBytes + 20);
  EXPECT_EQ(Echo("abc"), "'abc'");
  EXPECT_EQ(Echo(std::string("a\nb\xff", 4)), "'a\\nb\\xff'");
  EXPECT_EQ(Echo(key), "'" + std::string(kMaxEchoBytes, 'k') + "'...(2097152 bytes)");
  EXPECT_EQ(errors.Scrub(grpc::Status(grpc::StatusCode::INTERNAL, "disk I/O error on /srv/plx/tuner.db")).error_message(),
            "disk I/O error on <server-path>");
}

TEST_F(HardeningTest, ImportErrorsNameNoServerPathAndEchoKeysBounded) {
  StartServer();
  auto c = NewClient();
  // A header and nothing else: the cache refuses it naming the files it opened.
  const std::string junk = dir_ + "/junk.db";
  std::ofstream(junk, std::ios::binary) << std::string("SQLite format 3\0", 16) << std::string(4080, '\0');
  absl::StatusOr<v1::ImportResultsResponse> r = c->ImportResults(junk);
  EXPECT_TRUE(absl::IsInvalidArgument(r.status())) << r.status();
  EXPECT_EQ(r.status().message().find(dir_), absl::string_view::npos) << r.status();
  EXPECT_EQ(r.status().message().find(".parallax-import"), absl::string_view::npos) << r.status();

  // A file whose best config has a 2 MiB variant key.
  const std::string huge = dir_ + "/huge-key.db";
  {
    std::unique_ptr<cache::Store> s = *cache::Store::Open(huge);
    cache::DeviceInfo d;
    d.fingerprint = "Fake GPU|sm_90|132|13000|13.0";
    d.name = "Fake GPU";
    d.sm_count = 132;
    d.cc_major = 9;
    ASSERT_TRUE(s->UpsertDevice(d).ok());
    cache::BestConfig b;
    b.device_fingerprint = d.fingerprint;
    b.problem_key = "decode-bf16-d128-h32x8-contig-nowin.learned-plain";
    b.bucket = "b4-l4096";
    b.variant_key = std::string(2 << 20, 'k');
    b.median_us = 10;
    b.generator_version = 1;
    b.nvrtc_version = 13000;
    ASSERT_TRUE(s->SetBestConfig(b).ok());
  }
  r = c->ImportResults(huge);
  EXPECT_TRUE(absl::IsInvalidArgument(r.status())) << r.status().ToString().substr(0, 300);
  EXPECT_LE(r.status().message().size(), kMaxClientMessageBytes + 20);
  EXPECT_EQ(r.status().message().find(dir_), absl::string_view::npos) << r.status();
  EXPECT_TRUE(c->ListConfigs({})->configs().empty());
}

TEST(Loopback, ParsesAddressesNotPrefixes) {
  for (const char* yes : {"127.0.0.1:50051", "127.1.2.3:1", "ipv4:127.0.0.1:5", "localhost:1", "LOCALHOST:1",
                          "[::1]:0", "ipv6:[::1]:7", "[::ffff:127.0.0.1]:9", "unix:/tmp/x.sock", "unix-abstract:x"})
    EXPECT_TRUE(IsLoopbackAddress(yes)) << yes;
  for (const char* no : {"127.evil.example:50051", "127.0.0.1.evil.example:1", "127.1:5", "127.0.0.256:1",
                         "0127.0.0.1:1", "localhost.evil.example:1", "0.0.0.0:50051", "[::]:50051",
                         "10.1.2.3:50051", "[::2]:1", "[::ffff:10.0.0.1]:1", ":50051", "127.0.0.1", "[::1:5"})
    EXPECT_FALSE(IsLoopbackAddress(no)) << no;
}

TEST_F(HardeningTest, ShortAuthTokensAreRefused) {
  ServerOptions o;
  o.listen = "127.0.0.1:0";
  o.db_path = db_path_;
  o.auth_token = "abc";
  absl::StatusOr<std::unique_ptr<Server>> s = Server::Start(o, std::make_unique<NoGpuBackend>());
  EXPECT_TRUE(absl::IsInvalidArgument(s.status())) << s.status();
  EXPECT_NE(s.status().message().find("at least 16"), absl::string_view::npos) << s.status();

  // `parallax serve` says so in one line and exits 2, before it listens.
  const std::string token = dir_ + "/token";
  std::ofstream(token) << "abc\n";
  const std::string err = dir_ + "/stderr";
  const std::string cmd = std::string(PLX_PARALLAX_CLI) + " serve --no-gpu --listen 127.0.0.1:0 --db " + dir_ +
                          "/serve.db --auth-token-file " + token + " 2>" + err;
  const int status = std::system(cmd.c_str());
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 2);
  const std::string text = *ReadTextFile(err);
  EXPECT_EQ(text.rfind("parallax: ", 0), 0u) << text;
  EXPECT_NE(text.find("at least 16"), std::string::npos) << text;
  EXPECT_EQ(text.find('\n'), text.size() - 1) << text;
}

TEST_F(HardeningTest, ReflectionIsOffWhenATokenIsSet) {
  // ServerReflectionRequest{list_services: ""}; a bidi method answers one request like this.
  const std::string list_services("\x3a\x00", 2);
  const char* kMethod = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo";
  StartServer();  // no token: reflection on (and gRPC's plugin now registered process-wide)
  std::string reply;
  grpc::Status s = RawCall(NewClient()->channel(), kMethod, list_services, "", &reply);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_NE(reply.find("parallax.v1.Tuner"), std::string::npos);
  StopServer();

  ServerOptions o;
  o.auth_token = "0123456789abcdef0123";
  StartServer(o);
  ClientOptions co;
  co.token = o.auth_token;
  auto c = NewClient(co);
  for (const std::string& token : {std::string(), o.auth_token})
    EXPECT_EQ(RawCall(c->channel(), kMethod, list_services, token).error_code(), grpc::StatusCode::UNIMPLEMENTED);
  EXPECT_TRUE(*c->CheckHealth());  // health stays open
  EXPECT_TRUE(c->ListConfigs({}).ok());
}

TEST_F(HardeningTest, UnparsableRequestsAreInvalidArgumentAfterTheTokenCheck) {
  ServerOptions o;
  o.auth_token = "0123456789abcdef0123";
  StartServer(o, /*fake=*/true);
  auto channel = NewClient()->channel();
  const std::string bad_utf8("\x22\x01\xff", 3);  // ListConfigsRequest.page_token = "\xff"
  const std::string garbage("\xff\xff\xff", 3);
  struct Case {
    const char* method;
    std::string bytes;
    const char* message;
  };
  const std::vector<Case> cases = {
      {"/parallax.v1.Tuner/ListConfigs", bad_utf8, "parallax.v1.ListConfigsRequest"},
      {"/parallax.v1.Tuner/GetBestConfig", garbage, "parallax.v1.GetBestConfigRequest"},
      {"/parallax.v1.Tuner/SubmitTuning", garbage, "parallax.v1.SubmitTuningRequest"},
      {"/parallax.v1.Tuner/CancelJob", garbage, "parallax.v1.CancelJobRequest"},
      {"/parallax.v1.Tuner/ListJobs", garbage, "parallax.v1.ListJobsRequest"},
      {"/parallax.v1.Tuner/WatchJob", garbage, "parallax.v1.WatchJobRequest"},
      {"/parallax.v1.Tuner/ExportResults", garbage, "parallax.v1.ExportResultsRequest"},
      {"/parallax.v1.Tuner/ImportResults", garbage, "parallax.v1.ImportChunk"},
  };
  for (const Case& k : cases) {
    grpc::Status anonymous = RawCall(channel, k.method, k.bytes);
    EXPECT_EQ(anonymous.error_code(), grpc::StatusCode::UNAUTHENTICATED) << k.method;
    grpc::Status s = RawCall(channel, k.method, k.bytes, o.auth_token);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << k.method << ": " << s.error_message();
    EXPECT_NE(s.error_message().find(k.message), std::string::npos) << k.method << ": " << s.error_message();
  }
  // Well-formed raw bytes still work: CancelJobRequest{job_id: 0} is refused by validation.
  grpc::Status s = RawCall(channel, "/parallax.v1.Tuner/CancelJob", "", o.auth_token);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("job_id=0"), std::string::npos) << s.error_message();
}

TEST(ProtobufLog, ThrottleCountsWhatItDrops) {
  LogThrottle t(3, absl::Seconds(10));
  const absl::Time t0 = absl::FromUnixSeconds(1000);
  int64_t dropped = -1;
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(t.Admit(t0 + absl::Seconds(i), &dropped));
  EXPECT_EQ(dropped, 0);
  for (int i = 0; i < 5; ++i) EXPECT_FALSE(t.Admit(t0 + absl::Seconds(5), &dropped));
  EXPECT_TRUE(t.Admit(t0 + absl::Seconds(11), &dropped));
  EXPECT_EQ(dropped, 5);
}

TEST_F(HardeningTest, ProtobufUtf8LogsAreThrottled) {
  StartServer();  // installs the throttle
  auto channel = NewClient()->channel();
  const ProtobufLogCounts before = GetProtobufLogCounts();
  for (int i = 0; i < 50; ++i)
    EXPECT_EQ(RawCall(channel, "/parallax.v1.Tuner/ListConfigs", std::string("\x22\x01\xff", 3)).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
  const ProtobufLogCounts after = GetProtobufLogCounts();
  EXPECT_LE(after.written - before.written, 10);
  EXPECT_GE(after.dropped - before.dropped, 40);
}

TEST(ExecutorTest, ThrowingTasksAreRecoveredAndThePoolLivesOn) {
  Executor pool("test", 1, 8);
  std::mutex mu;
  std::condition_variable cv;
  int recovered = 0, ran = 0;
  auto bump = [&](int& n) {
    std::lock_guard lock(mu);
    ++n;
    cv.notify_all();
  };
  ASSERT_TRUE(pool.TrySubmit([] { throw std::runtime_error("boom"); }, [&] { bump(recovered); }));
  ASSERT_TRUE(pool.TrySubmit([] { throw 42; }, [&] { bump(recovered); }));
  ASSERT_TRUE(pool.TrySubmit([] { throw std::runtime_error("no recovery"); }));
  ASSERT_TRUE(pool.SubmitContinuation([&] { bump(ran); }));
  std::unique_lock lock(mu);
  EXPECT_TRUE(cv.wait_for(lock, std::chrono::seconds(10), [&] { return recovered == 2 && ran == 1; }));
}

}  // namespace
}  // namespace parallax::service::testing
