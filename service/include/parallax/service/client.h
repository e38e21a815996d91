// C++ client of the Parallax tuning service. Every call carries a deadline: GetBestConfig a
// short one (a runtime asking for a config should fall back to its default rather than
// wait), the others a longer one; WatchJob none unless given.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "parallax/v1/tuner.grpc.pb.h"

namespace parallax::service {

struct ClientOptions {
  std::string server = "127.0.0.1:50051";
  std::string token;             // sent as "authorization: Bearer <token>" when not empty
  std::string tls_root_cert_pem;  // not empty: TLS, trusting these roots
  std::string tls_server_name;    // override of the name checked in the server certificate
  absl::Duration lookup_deadline = absl::Milliseconds(250);
  absl::Duration call_deadline = absl::Seconds(30);
  int64_t max_message_bytes = 4 << 20;
};

class Client {
 public:
  static absl::StatusOr<std::unique_ptr<Client>> Connect(const ClientOptions& options);

  absl::StatusOr<v1::GetBestConfigResponse> GetBestConfig(const v1::GetBestConfigRequest& request);
  absl::StatusOr<v1::SubmitTuningResponse> SubmitTuning(const v1::SubmitTuningRequest& request);
  // Calls `on_progress` for every snapshot until the job ends; returns the last one.
  absl::StatusOr<v1::JobProgress> WatchJob(int64_t job_id,
                                           const std::function<void(const v1::JobProgress&)>& on_progress,
                                           absl::Duration deadline = absl::InfiniteDuration());
  absl::StatusOr<v1::CancelJobResponse> CancelJob(int64_t job_id);
  absl::StatusOr<v1::ListJobsResponse> ListJobs(const v1::ListJobsRequest& request);
  absl::StatusOr<v1::ListConfigsResponse> ListConfigs(const v1::ListConfigsRequest& request);
  // Writes the server's cache to `path` (must not exist); returns its size.
  absl::StatusOr<int64_t> ExportResults(const std::string& path);
  absl::StatusOr<v1::ImportResultsResponse> ImportResults(const std::string& path);
  // grpc.health.v1.Health/Check for `service` ("" = the whole server): true when SERVING.
  absl::StatusOr<bool> CheckHealth(const std::string& service = "parallax.v1.Tuner");

  v1::Tuner::Stub& stub() { return *stub_; }
  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }

 private:
  Client(ClientOptions options, std::shared_ptr<grpc::Channel> channel);
  void Prepare(grpc::ClientContext& ctx, absl::Duration deadline) const;

  ClientOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Tuner::Stub> stub_;
};

// The default connection of command-line tools: --server, --token-file, --tls-ca.
absl::StatusOr<ClientOptions> ClientOptionsFromFiles(const std::string& server, const std::string& token_file,
                                                    const std::string& tls_ca_file, const std::string& tls_server_name);

// Token files hold one line; surrounding whitespace is dropped. Empty files are an error.
absl::StatusOr<std::string> ReadTokenFile(const std::string& path);
absl::StatusOr<std::string> ReadTextFile(const std::string& path);

}  // namespace parallax::service
