#include "server_fixture.h"

#include <filesystem>
#include <stdlib.h>

namespace parallax::service::testing {

void ServerTest::SetUp() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "plx-svc-XXXXXX").string();
  ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
  dir_ = tmpl;
  db_path_ = dir_ + "/tuner.db";
}

void ServerTest::TearDown() {
  StopServer();
  store_.reset();
  backend_store_.reset();
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

void ServerTest::StartServer(ServerOptions options, bool fake, FakeBackendOptions fake_options) {
  if (options.db_path.empty()) options.db_path = db_path_;
  std::unique_ptr<TuningBackend> backend;
  if (fake) {
    absl::StatusOr<std::unique_ptr<cache::Store>> s = cache::Store::Open(options.db_path);
    ASSERT_TRUE(s.ok()) << s.status();
    backend_store_ = *std::move(s);
    auto f = std::make_unique<FakeBackend>(backend_store_.get(), fake_options);
    fake_ = f.get();
    backend = std::move(f);
  } else {
    backend = std::make_unique<NoGpuBackend>();
    fake_ = nullptr;
  }
  StartServerWith(std::move(options), std::move(backend));
}

void ServerTest::StartServerWith(ServerOptions options, std::unique_ptr<TuningBackend> backend) {
  if (options.listen == ServerOptions{}.listen) options.listen = "127.0.0.1:0";
  if (options.db_path.empty()) options.db_path = db_path_;
  options.persist_interval = absl::Milliseconds(20);
  absl::StatusOr<std::unique_ptr<Server>> server = Server::Start(options, std::move(backend));
  ASSERT_TRUE(server.ok()) << server.status();
  server_ = *std::move(server);
  ASSERT_GT(server_->port(), 0);
}

void ServerTest::StopServer(absl::Duration grace) {
  if (!server_) return;
  server_->Shutdown(grace);
  server_.reset();
  fake_ = nullptr;
  backend_store_.reset();
}

std::unique_ptr<Client> ServerTest::NewClient(ClientOptions options) {
  options.server = server_->address();
  options.lookup_deadline = absl::Seconds(5);  // tests run beside builds on small machines
  absl::StatusOr<std::unique_ptr<Client>> c = Client::Connect(options);
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? *std::move(c) : nullptr;
}

cache::Store& ServerTest::store() {
  if (!store_) {
    absl::StatusOr<std::unique_ptr<cache::Store>> s = cache::Store::Open(db_path_);
    EXPECT_TRUE(s.ok()) << s.status();
    store_ = *std::move(s);
  }
  return *store_;
}

v1::Problem ServerTest::DecodeProblem(int batch, int seqlen) {
  v1::Problem p;
  p.set_mode(v1::MODE_DECODE);
  p.set_dtype(v1::DTYPE_BF16);
  p.set_head_dim(128);
  p.set_num_q_heads(32);
  p.set_num_kv_heads(8);
  p.set_kv_layout(v1::KV_LAYOUT_CONTIGUOUS);
  p.set_probe(v1::PROBE_LEARNED);
  p.set_affine(v1::AFFINE_PLAIN);
  p.set_batch(batch);
  p.set_seqlen(seqlen);
  return p;
}

v1::Problem ServerTest::PrefillProblem(int batch, int q_len, int context_len) {
  v1::Problem p = DecodeProblem(batch, q_len);
  p.set_mode(v1::MODE_PREFILL);
  p.set_context_len(context_len);
  return p;
}

v1::GetBestConfigRequest ServerTest::Lookup(const v1::Problem& p, int device) {
  v1::GetBestConfigRequest r;
  *r.mutable_device() = FakeBackend::Describe(device);
  *r.mutable_problem() = p;
  return r;
}

v1::SubmitTuningRequest ServerTest::Submit(std::initializer_list<v1::Problem> problems, double budget) {
  v1::SubmitTuningRequest r;
  for (const v1::Problem& p : problems) *r.add_problems() = p;
  r.set_budget_seconds(budget);
  return r;
}

v1::JobProgress ServerTest::WatchUntil(Client& c, int64_t job_id,
                                       const std::function<bool(const v1::JobProgress&)>& pred) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  v1::WatchJobRequest req;
  req.set_job_id(job_id);
  auto reader = c.stub().WatchJob(&ctx, req);
  v1::JobProgress p, last;
  while (reader->Read(&p)) {
    last = p;
    if (pred(p)) {
      ctx.TryCancel();
      break;
    }
  }
  reader->Finish();
  return last;
}

}  // namespace parallax::service::testing
