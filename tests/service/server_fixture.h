// A Tuner server in the test process on an ephemeral loopback port, over a database in a
// fresh temporary directory, plus helpers to build requests.
#pragma once

#include <memory>
#include <string>

#include <gtest/gtest.h>

#include "fake_backend.h"
#include "parallax/service/client.h"
#include "parallax/service/server.h"

namespace parallax::service::testing {

class ServerTest : public ::testing::Test {
 public:
  static v1::Problem DecodeProblem(int batch = 4, int seqlen = 4096);
  // The same heads and algorithm as a prefill of q_len queries per sequence against
  // context_len keys (0 = q_len).
  static v1::Problem PrefillProblem(int batch = 1, int q_len = 4096, int context_len = 0);
  static v1::GetBestConfigRequest Lookup(const v1::Problem& p, int device = 0);
  static v1::SubmitTuningRequest Submit(std::initializer_list<v1::Problem> problems, double budget = 60);

 protected:
  void SetUp() override;
  void TearDown() override;

  // Starts a server over db_path_ (options.listen/db_path filled in unless set). With
  // `fake`, a FakeBackend writing through its own Store; otherwise NoGpuBackend.
  void StartServer(ServerOptions options = {}, bool fake = false, FakeBackendOptions fake_options = {});
  void StartServerWith(ServerOptions options, std::unique_ptr<TuningBackend> backend);
  void StopServer(absl::Duration grace = absl::ZeroDuration());
  std::unique_ptr<Client> NewClient(ClientOptions options = {});
  // A second Store on the server's database, for seeding and checking rows.
  cache::Store& store();

  // Follows a job until `pred` holds for a snapshot (or the job ends); returns that snapshot.
  v1::JobProgress WatchUntil(Client& c, int64_t job_id, const std::function<bool(const v1::JobProgress&)>& pred);

  std::string dir_;
  std::string db_path_;
  std::unique_ptr<Server> server_;
  FakeBackend* fake_ = nullptr;  // owned by server_
  std::unique_ptr<cache::Store> backend_store_;
  std::unique_ptr<cache::Store> store_;
};

}  // namespace parallax::service::testing
