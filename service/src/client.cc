#include "parallax/service/client.h"

#include <filesystem>
#include <fstream>
#include <sstream>
#include <condition_variable>
#include <mutex>

#include <grpcpp/generic/generic_stub.h>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "status_util.h"

namespace parallax::service {

Client::Client(ClientOptions options, std::shared_ptr<grpc::Channel> channel)
    : options_(std::move(options)), channel_(std::move(channel)), stub_(v1::Tuner::NewStub(channel_)) {}

absl::StatusOr<std::unique_ptr<Client>> Client::Connect(const ClientOptions& options) {
  if (options.server.empty()) return absl::InvalidArgumentError("server: required (host:port)");
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(static_cast<int>(options.max_message_bytes));
  args.SetMaxSendMessageSize(static_cast<int>(options.max_message_bytes));
  std::shared_ptr<grpc::ChannelCredentials> creds = grpc::InsecureChannelCredentials();
  if (!options.tls_root_cert_pem.empty()) {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = options.tls_root_cert_pem;
    creds = grpc::SslCredentials(ssl);
    if (!options.tls_server_name.empty()) args.SetSslTargetNameOverride(options.tls_server_name);
  }
  // Channels are lazy: a bad address shows up as UNAVAILABLE on the first call.
  return std::unique_ptr<Client>(new Client(options, grpc::CreateCustomChannel(options.server, creds, args)));
}

void Client::Prepare(grpc::ClientContext& ctx, absl::Duration deadline) const {
  if (deadline != absl::InfiniteDuration()) ctx.set_deadline(absl::ToChronoTime(absl::Now() + deadline));
  if (!options_.token.empty()) ctx.AddMetadata("authorization", absl::StrCat("Bearer ", options_.token));
}

absl::StatusOr<v1::GetBestConfigResponse> Client::GetBestConfig(const v1::GetBestConfigRequest& request) {
  grpc::ClientContext ctx;
  Prepare(ctx, options_.lookup_deadline);
  v1::GetBestConfigResponse out;
  if (absl::Status s = FromGrpc(stub_->GetBestConfig(&ctx, request, &out)); !s.ok()) return s;
  return out;
}

absl::StatusOr<v1::SubmitTuningResponse> Client::SubmitTuning(const v1::SubmitTuningRequest& request) {
  grpc::ClientContext ctx;
  Prepare(ctx, options_.call_deadline);
  v1::SubmitTuningResponse out;
  if (absl::Status s = FromGrpc(stub_->SubmitTuning(&ctx, request, &out)); !s.ok()) return s;
  return out;
}

absl::StatusOr<v1::JobProgress> Client::WatchJob(int64_t job_id,
                                                 const std::function<void(const v1::JobProgress&)>& on_progress,
                                                 absl::Duration deadline) {
  grpc::ClientContext ctx;
  Prepare(ctx, deadline);
  v1::WatchJobRequest request;
  request.set_job_id(job_id);
  std::unique_ptr<grpc::ClientReader<v1::JobProgress>> reader = stub_->WatchJob(&ctx, request);
  v1::JobProgress p, last;
  bool any = false;
  while (reader->Read(&p)) {
    if (on_progress) on_progress(p);
    last = p;
    any = true;
  }
  if (absl::Status s = FromGrpc(reader->Finish()); !s.ok()) return s;
  if (!any) return absl::InternalError("watch ended without a snapshot");
  return last;
}

absl::StatusOr<v1::CancelJobResponse> Client::CancelJob(int64_t job_id) {
  grpc::ClientContext ctx;
  Prepare(ctx, options_.call_deadline);
  v1::CancelJobRequest request;
  request.set_job_id(job_id);
  v1::CancelJobResponse out;
  if (absl::Status s = FromGrpc(stub_->CancelJob(&ctx, request, &out)); !s.ok()) return s;
  return out;
}

absl::StatusOr<v1::ListJobsResponse> Client::ListJobs(const v1::ListJobsRequest& request) {
  grpc::ClientContext ctx;
  Prepare(ctx, options_.call_deadline);
  v1::ListJobsResponse out;
  if (absl::Status s = FromGrpc(stub_->ListJobs(&ctx, request, &out)); !s.ok()) return s;
  return out;
}

absl::StatusOr<v1::ListConfigsResponse> Client::ListConfigs(const v1::ListConfigsRequest& request) {
  grpc::ClientContext ctx;
  Prepare(ctx, options_.call_deadline);
  v1::ListConfigsResponse out;
  if (absl::Status s = FromGrpc(stub_->ListConfigs(&ctx, request, &out)); !s.ok()) return s;
  return out;
}

absl::StatusOr<int64_t> Client::ExportResults(const std::string& path) {
  if (std::filesystem::exists(path)) return absl::AlreadyExistsError(absl::StrCat(path, ": already exists"));
  const std::string partial = path + ".partial";
  std::ofstream out(partial, std::ios::binary | std::ios::trunc);
  if (!out) return absl::PermissionDeniedError(absl::StrCat(partial, ": cannot write"));
  grpc::ClientContext ctx;
  Prepare(ctx, absl::InfiniteDuration());
  std::unique_ptr<grpc::ClientReader<v1::ExportChunk>> reader = stub_->ExportResults(&ctx, v1::ExportResultsRequest());
  v1::ExportChunk chunk;
  int64_t written = 0, total = -1;
  while (reader->Read(&chunk)) {
    if (chunk.offset() != written) {
      ctx.TryCancel();
      break;
    }
    out.write(chunk.data().data(), static_cast<std::streamsize>(chunk.data().size()));
    written += static_cast<int64_t>(chunk.data().size());
    total = chunk.total_bytes();
  }
  absl::Status s = FromGrpc(reader->Finish());
  out.close();
  if (s.ok() && (!out || written != total))
    s = absl::DataLossError(absl::StrCat("export incomplete: ", written, " of ", total, " bytes"));
  if (!s.ok()) {
    std::filesystem::remove(partial);
    return s;
  }
  std::filesystem::rename(partial, path);  // a reader never sees a half-written cache
  return written;
}

absl::StatusOr<v1::ImportResultsResponse> Client::ImportResults(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::error_code ec;
  const int64_t total = static_cast<int64_t>(std::filesystem::file_size(path, ec));
  if (ec) return absl::NotFoundError(absl::StrCat(path, ": ", ec.message()));
  grpc::ClientContext ctx;
  Prepare(ctx, absl::InfiniteDuration());
  v1::ImportResultsResponse out;
  std::unique_ptr<grpc::ClientWriter<v1::ImportChunk>> writer = stub_->ImportResults(&ctx, &out);
  constexpr int64_t kChunk = 1 << 20;
  std::string buf(kChunk, '\0');
  for (int64_t sent = 0; sent < total;) {
    const int64_t n = std::min(kChunk, total - sent);
    if (!in.read(buf.data(), n)) return absl::DataLossError(absl::StrCat(path, ": read failed"));
    v1::ImportChunk chunk;
    chunk.set_data(buf.data(), static_cast<size_t>(n));
    if (sent == 0) chunk.set_total_bytes(total);
    if (!writer->Write(chunk)) break;  // the server ended the call; Finish says why
    sent += n;
  }
  writer->WritesDone();
  if (absl::Status s = FromGrpc(writer->Finish()); !s.ok()) return s;
  return out;
}

absl::StatusOr<bool> Client::CheckHealth(const std::string& service) {
  // grpc.health.v1.HealthCheckRequest { string service = 1; } encoded by hand: the Debian
  // packages ship no generated health stubs, and one string field is not worth a proto.
  if (service.size() > 127) return absl::InvalidArgumentError("service: at most 127 bytes");
  std::string request;
  if (!service.empty()) {
    request.push_back(0x0a);
    request.push_back(static_cast<char>(service.size()));  // a one-byte varint
    request += service;
  }
  grpc::Slice slice(request);
  grpc::ByteBuffer request_buf(&slice, 1), response_buf;
  grpc::GenericStub generic(channel_);
  grpc::ClientContext ctx;
  Prepare(ctx, options_.call_deadline);
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  grpc::Status status;
  generic.UnaryCall(&ctx, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request_buf, &response_buf,
                    [&](grpc::Status s) {
                      std::lock_guard lock(mu);
                      status = std::move(s);
                      done = true;
                      cv.notify_one();
                    });
  {
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return done; });
  }
  if (absl::Status s = FromGrpc(status); !s.ok()) return s;
  std::vector<grpc::Slice> slices;
  if (!response_buf.Dump(&slices).ok()) return absl::InternalError("unreadable health response");
  std::string response;
  for (const grpc::Slice& sl : slices) response.append(reinterpret_cast<const char*>(sl.begin()), sl.size());
  // HealthCheckResponse { ServingStatus status = 1; }, SERVING = 1.
  return response.size() == 2 && response[0] == 0x08 && response[1] == 0x01;
}

absl::StatusOr<std::string> ReadTextFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

absl::StatusOr<std::string> ReadTokenFile(const std::string& path) {
  absl::StatusOr<std::string> text = ReadTextFile(path);
  if (!text.ok()) return text.status();
  std::string token(absl::StripAsciiWhitespace(*text));
  if (token.empty()) return absl::InvalidArgumentError(absl::StrCat(path, ": empty token file"));
  for (char c : token)
    if (c < 0x21 || c > 0x7e)
      return absl::InvalidArgumentError(absl::StrCat(path, ": the token must be one line of printable ASCII"));
  return token;
}

absl::StatusOr<ClientOptions> ClientOptionsFromFiles(const std::string& server, const std::string& token_file,
                                                    const std::string& tls_ca_file, const std::string& tls_server_name) {
  ClientOptions o;
  o.server = server;
  if (!token_file.empty()) {
    absl::StatusOr<std::string> token = ReadTokenFile(token_file);
    if (!token.ok()) return token.status();
    o.token = *std::move(token);
  }
  if (!tls_ca_file.empty()) {
    absl::StatusOr<std::string> ca = ReadTextFile(tls_ca_file);
    if (!ca.ok()) return ca.status();
    o.tls_root_cert_pem = *std::move(ca);
  }
  o.tls_server_name = tls_server_name;
  return o;
}

}  // namespace parallax::service
