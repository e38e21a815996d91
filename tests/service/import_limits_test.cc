// ImportResults under pressure: how many uploads at once, how much temporary disk, stalled
// and slow streams, a client that goes away after its last chunk, leftovers of dead servers,
// and the status each failure answers.
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "import_status.h"
#include "server_fixture.h"

namespace parallax::service::testing {
namespace {

const std::string kHeader("SQLite format 3\0", 16);

v1::ImportChunk Chunk(const std::string& data, int64_t total) {
  v1::ImportChunk c;
  c.set_data(data);
  c.set_total_bytes(total);
  return c;
}

// An upload the test keeps open (30 s at most, should the server never end it).
struct Upload {
  explicit Upload(Client& c) {
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    writer = c.stub().ImportResults(&ctx, &resp);
  }
  grpc::Status Cancel() {
    ctx.TryCancel();
    return writer->Finish();
  }
  grpc::ClientContext ctx;
  v1::ImportResultsResponse resp;
  std::unique_ptr<grpc::ClientWriter<v1::ImportChunk>> writer;
};

grpc::Status RawImport(Client& c, const std::vector<v1::ImportChunk>& chunks) {
  Upload u(c);
  for (const v1::ImportChunk& chunk : chunks)
    if (!u.writer->Write(chunk)) break;
  u.writer->WritesDone();
  return u.writer->Finish();
}

class ImportLimitsTest : public ServerTest {
 protected:
  int UploadFiles() {
    int n = 0;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(dir_, ec))
      if (e.path().filename().string().rfind(".parallax-import-", 0) == 0) ++n;
    return n;
  }
  // Waits (bounded) until the server holds `n` upload files.
  void WaitForUploadFiles(int n) {
    for (int i = 0; i < 1000 && UploadFiles() != n; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    ASSERT_EQ(UploadFiles(), n);
  }
  // A real cache file: a fake-GPU server tunes one problem and exports it.
  std::string MakeExport() {
    StartServer({}, /*fake=*/true);
    auto a = NewClient();
    absl::StatusOr<v1::SubmitTuningResponse> job = a->SubmitTuning(Submit({DecodeProblem(2, 2048)}));
    EXPECT_TRUE(job.ok()) << job.status();
    EXPECT_EQ(a->WatchJob(job->job_id(), nullptr, absl::Seconds(30))->state(), v1::JOB_STATE_DONE);
    const std::string file = dir_ + "/export.db";
    EXPECT_TRUE(a->ExportResults(file).ok());
    StopServer();
    db_path_ = dir_ + "/target.db";
    return file;
  }
};

TEST_F(ImportLimitsTest, ConcurrentUploadsAreCappedAndSlotsComeBack) {
  ServerOptions o;
  o.limits.max_concurrent_imports = 2;
  StartServer(o);
  auto c = NewClient();
  std::vector<std::unique_ptr<Upload>> open;
  for (int i = 0; i < 2; ++i) {
    open.push_back(std::make_unique<Upload>(*c));
    ASSERT_TRUE(open.back()->writer->Write(Chunk(kHeader, 1000)));
  }
  WaitForUploadFiles(2);
  grpc::Status third = RawImport(*c, {Chunk(kHeader, 1000)});
  EXPECT_EQ(third.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << third.error_message();
  EXPECT_NE(third.error_message().find("max_concurrent_imports=2"), std::string::npos) << third.error_message();

  EXPECT_EQ(open[0]->Cancel().error_code(), grpc::StatusCode::CANCELLED);
  WaitForUploadFiles(1);
  grpc::Status again = RawImport(*c, {Chunk(kHeader, 1000)});  // admitted now, then short
  EXPECT_EQ(again.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << again.error_message();
  EXPECT_NE(again.error_message().find("got 16 of total_bytes=1000"), std::string::npos) << again.error_message();
  open[1]->Cancel();
  WaitForUploadFiles(0);
}

TEST_F(ImportLimitsTest, TemporarySpaceIsReservedFromTotalBytes) {
  ServerOptions o;
  o.limits.max_concurrent_imports = 4;
  o.limits.max_import_temp_bytes = 1000;
  StartServer(o);
  auto c = NewClient();
  Upload first(*c);
  ASSERT_TRUE(first.writer->Write(Chunk(kHeader, 600)));
  WaitForUploadFiles(1);
  grpc::Status s = RawImport(*c, {Chunk(kHeader, 600)});
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();
  EXPECT_NE(s.error_message().find("max_import_temp_bytes=1000"), std::string::npos) << s.error_message();
  s = RawImport(*c, {Chunk(kHeader, 400)});  // fits beside the first
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  first.Cancel();
  WaitForUploadFiles(0);
  s = RawImport(*c, {Chunk(kHeader, 1000)});  // the whole space is free again
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
}

TEST_F(ImportLimitsTest, StalledUploadsAreEndedAndReleaseTheirSpace) {
  ServerOptions o;
  o.limits.max_concurrent_imports = 1;
  o.limits.import_idle_limit_ms = 300;
  StartServer(o);
  auto c = NewClient();
  // Silent from the start, and silent after a first chunk.
  for (bool first_chunk : {false, true}) {
    const absl::Time start = absl::Now();
    Upload u(*c);
    if (first_chunk) {
      ASSERT_TRUE(u.writer->Write(Chunk(kHeader, 1000)));
    }
    grpc::Status s = u.writer->Finish();  // no WritesDone: the server must end it
    EXPECT_EQ(s.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << s.error_message();
    EXPECT_NE(s.error_message().find("no progress from the client"), std::string::npos) << s.error_message();
    EXPECT_LT(absl::Now() - start, absl::Seconds(10));
    WaitForUploadFiles(0);
  }
  grpc::Status s = RawImport(*c, {Chunk(kHeader, 1000)});  // the one slot is free again
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
}

TEST_F(ImportLimitsTest, SlowUploadsRunOutOfTime) {
  ServerOptions o;
  o.limits.import_time_limit_ms = 200;
  StartServer(o);
  auto c = NewClient();
  Upload u(*c);
  ASSERT_TRUE(u.writer->Write(Chunk(kHeader, 1000)));
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  u.writer->Write(Chunk(std::string(984, '\0'), 0));  // may fail: the server may have ended it
  u.writer->WritesDone();
  grpc::Status s = u.writer->Finish();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << s.error_message();
  EXPECT_NE(s.error_message().find("import_time_limit_ms"), std::string::npos) << s.error_message();
  WaitForUploadFiles(0);
}

TEST_F(ImportLimitsTest, ClientGoneAfterItsLastChunkMergesNothing) {
  const std::string file = MakeExport();
  StartServer();
  auto c = NewClient();
  const std::string data = *ReadTextFile(file);
  {
    Upload u(*c);
    ASSERT_TRUE(u.writer->Write(Chunk(data, static_cast<int64_t>(data.size()))));
    // Every byte arrived, but the client never closed its side: a lost connection, not a
    // finished upload.
    WaitForUploadFiles(1);
    EXPECT_EQ(u.Cancel().error_code(), grpc::StatusCode::CANCELLED);
  }
  WaitForUploadFiles(0);
  absl::StatusOr<std::vector<cache::BestConfig>> rows = store().ListBestConfigs();
  ASSERT_TRUE(rows.ok());
  EXPECT_TRUE(rows->empty());
  // The same upload, finished, merges.
  absl::StatusOr<v1::ImportResultsResponse> merged = c->ImportResults(file);
  ASSERT_TRUE(merged.ok()) << merged.status();
  EXPECT_EQ(merged->best_configs().inserted(), 1);
}

TEST_F(ImportLimitsTest, ExportToAClientThatStopsReadingIsCancelled) {
  {
    // 48 MiB of binaries: far more than HTTP/2 windows and socket buffers hold.
    std::unique_ptr<cache::Store> s = *cache::Store::Open(db_path_);
    for (int i = 0; i < 3; ++i) {
      cache::BinaryEntry b;
      b.key = "blob-" + std::to_string(i);
      b.arch = "sm_90";
      b.cubin.assign(16 << 20, static_cast<uint8_t>(i + 1));
      ASSERT_TRUE(s->PutBinary(b).ok());
    }
  }
  ServerOptions o;
  o.limits.import_idle_limit_ms = 300;
  StartServer(o);
  auto c = NewClient();
  const absl::Time start = absl::Now();
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  auto reader = c->stub().ExportResults(&ctx, v1::ExportResultsRequest());
  v1::ExportChunk chunk;
  ASSERT_TRUE(reader->Read(&chunk));
  EXPECT_GT(chunk.total_bytes(), int64_t{48} << 20);
  std::this_thread::sleep_for(std::chrono::seconds(2));  // stalled: the server's writes back up
  int more = 0;
  while (reader->Read(&chunk)) ++more;
  EXPECT_LT(more, 40);  // not the whole export
  grpc::Status s = reader->Finish();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::CANCELLED) << s.error_message();
  EXPECT_LT(absl::Now() - start, absl::Seconds(30));
}

TEST_F(ImportLimitsTest, DeadServersUploadFilesAreRemovedAtStart) {
  const pid_t child = fork();
  if (child == 0) _exit(0);
  ASSERT_GT(child, 0);
  ASSERT_EQ(waitpid(child, nullptr, 0), child);  // now a pid of no process
  const std::string dead = std::to_string(child), mine = std::to_string(getpid());
  const std::vector<std::string> stale = {".parallax-import-" + dead + "-0.db", ".parallax-import-" + dead + "-0.db-journal",
                                          ".parallax-export-" + dead + "-7.db"};
  const std::vector<std::string> kept = {".parallax-import-" + mine + "-99.db", ".parallax-import-1-0.db",
                                         ".parallax-import-x-0.db", "other.db"};
  for (const std::string& name : stale) std::ofstream(dir_ + "/" + name) << "x";
  for (const std::string& name : kept) std::ofstream(dir_ + "/" + name) << "x";
  StartServer();
  for (const std::string& name : stale) EXPECT_FALSE(std::filesystem::exists(dir_ + "/" + name)) << name;
  for (const std::string& name : kept) EXPECT_TRUE(std::filesystem::exists(dir_ + "/" + name)) << name;
}

TEST(ImportStatus, EveryFailureHasItsCodeAndSaysWhetherARetryIsSafe) {
  struct Case {
    absl::Status in;
    grpc::StatusCode code;
    const char* text;
  };
  const std::vector<Case> cases = {
      {absl::InvalidArgumentError("best_configs row 3: bad"), grpc::StatusCode::INVALID_ARGUMENT, "data: best_configs row 3"},
      {absl::DataLossError("not a database"), grpc::StatusCode::INVALID_ARGUMENT, "data: not a database"},
      {absl::CancelledError("x"), grpc::StatusCode::CANCELLED, "safe"},
      {absl::DeadlineExceededError("x"), grpc::StatusCode::DEADLINE_EXCEEDED, "import_time_limit_ms"},
      {absl::UnavailableError("database is locked"), grpc::StatusCode::UNAVAILABLE, "importing the same file again is safe"},
      {absl::FailedPreconditionError("schema v9 is newer"), grpc::StatusCode::FAILED_PRECONDITION, "schema v9"},
      {absl::InternalError("boom"), grpc::StatusCode::INTERNAL, "boom"},
  };
  for (const Case& k : cases) {
    grpc::Status s = ImportFailureForClient(k.in);
    EXPECT_EQ(s.error_code(), k.code) << k.in;
    EXPECT_NE(s.error_message().find(k.text), std::string::npos) << s.error_message();
  }
}

}  // namespace
}  // namespace parallax::service::testing
