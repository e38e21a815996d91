// ExportResults / ImportResults: a cache moves between servers; bad uploads are refused.
#include <fstream>

#include "parallax/service/validate.h"
#include "server_fixture.h"

namespace parallax::service::testing {
namespace {

class TransferTest : public ServerTest {};

std::string ReadAll(const std::string& path) { return *ReadTextFile(path); }

TEST_F(TransferTest, ExportThenImportIntoAnotherServer) {
  // Tune two problems on server A (fake GPU), then move its cache to server B.
  StartServer({}, /*fake=*/true);
  auto a = NewClient();
  absl::StatusOr<v1::SubmitTuningResponse> job = a->SubmitTuning(Submit({DecodeProblem(1, 1024), DecodeProblem(16, 16384)}));
  ASSERT_TRUE(job.ok()) << job.status();
  ASSERT_EQ(a->WatchJob(job->job_id(), nullptr)->state(), v1::JOB_STATE_DONE);
  const std::string file = dir_ + "/a.db";
  absl::StatusOr<int64_t> bytes = a->ExportResults(file);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  const std::string data = ReadAll(file);
  EXPECT_EQ(static_cast<int64_t>(data.size()), *bytes);
  EXPECT_EQ(data.compare(0, 16, std::string("SQLite format 3\0", 16)), 0);
  EXPECT_TRUE(absl::IsAlreadyExists(a->ExportResults(file).status()));
  StopServer();

  db_path_ = dir_ + "/b.db";
  ServerOptions o;
  o.lookup_cache_ttl = absl::Hours(1);  // only the import may refresh the lookup below
  StartServer(o);
  auto b = NewClient();
  EXPECT_EQ(b->GetBestConfig(Lookup(DecodeProblem(16, 16384)))->match(), v1::MATCH_DEFAULT);
  absl::StatusOr<v1::ImportResultsResponse> merged = b->ImportResults(file);
  ASSERT_TRUE(merged.ok()) << merged.status();
  EXPECT_EQ(merged->best_configs().inserted(), 2);
  EXPECT_EQ(merged->devices().inserted(), 1);
  EXPECT_EQ(merged->runs().inserted(), 1);
  EXPECT_EQ(merged->bytes_received(), *bytes);
  EXPECT_EQ(b->GetBestConfig(Lookup(DecodeProblem(16, 16384)))->match(), v1::MATCH_EXACT);
  EXPECT_EQ(b->ListConfigs({})->configs_size(), 2);
  // Merging the same file again changes nothing.
  merged = b->ImportResults(file);
  ASSERT_TRUE(merged.ok()) << merged.status();
  EXPECT_EQ(merged->best_configs().inserted(), 0);
}

grpc::Status RawImport(Client& c, const std::vector<v1::ImportChunk>& chunks) {
  grpc::ClientContext ctx;
  v1::ImportResultsResponse resp;
  auto writer = c.stub().ImportResults(&ctx, &resp);
  for (const v1::ImportChunk& chunk : chunks)
    if (!writer->Write(chunk)) break;
  writer->WritesDone();
  return writer->Finish();
}

v1::ImportChunk Chunk(const std::string& data, int64_t total) {
  v1::ImportChunk c;
  c.set_data(data);
  c.set_total_bytes(total);
  return c;
}

TEST_F(TransferTest, BadUploadsAreRefusedNamingTheField) {
  StartServer();
  auto c = NewClient();
  const std::string header("SQLite format 3\0", 16);
  struct Case {
    std::vector<v1::ImportChunk> chunks;
    const char* field;
  };
  const std::vector<Case> cases = {
      {{}, "data: empty import"},
      {{Chunk("hello, this is not a database", 29)}, "data: not an SQLite database"},
      {{Chunk(header, 0)}, "total_bytes: required"},
      {{Chunk(header, int64_t{1} << 40)}, "total_bytes=1099511627776"},
      {{Chunk(header, 100)}, "data: got 16 of total_bytes=100"},
      {{Chunk(header, 16), Chunk("x", 0)}, "data: more than total_bytes=16"},
      {{Chunk(header + std::string(4080, '\0'), 4096)}, "data: "},  // a header and nothing else
  };
  for (const Case& k : cases) {
    grpc::Status s = RawImport(*c, k.chunks);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << k.field << ": " << s.error_message();
    EXPECT_NE(s.error_message().find(k.field), std::string::npos)
        << "expected '" << k.field << "' in: " << s.error_message();
  }
  // The server's own cache is untouched and still serves.
  EXPECT_TRUE(c->GetBestConfig(Lookup(DecodeProblem())).ok());
  absl::StatusOr<cache::VerifyReport> report = store().Verify();
  ASSERT_TRUE(report.ok());
  EXPECT_TRUE(report->ok);
}

}  // namespace
}  // namespace parallax::service::testing
