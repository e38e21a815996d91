// The Tuner gRPC service on the callback API. Reactor threads only do in-memory work and
// short reads of the lookup store; anything that writes or may wait on the database runs
// on the ops pool, export/import on the transfer pool. Methods are registered raw
// (raw_messages.h says why); every answer's message goes through ClientErrors.
#pragma once

#include <functional>
#include <string>

#include "auth.h"
#include "client_errors.h"
#include "executor.h"
#include "import_limits.h"
#include "parallax/cache/store.h"
#include "parallax/service/job_manager.h"
#include "parallax/service/limits.h"
#include "parallax/service/lookup_cache.h"
#include "parallax/v1/tuner.grpc.pb.h"

namespace parallax::service {

struct ServiceDeps {
  ServiceLimits limits;
  cache::Store* lookup_store = nullptr;    // reactor threads: short reads only
  LookupCache* lookup_cache = nullptr;     // over lookup_store; dropped after imports
  cache::Store* list_store = nullptr;      // ops pool: listings
  cache::Store* transfer_store = nullptr;  // transfer pool: export/import
  JobManager* jobs = nullptr;
  Executor* ops = nullptr;
  Executor* transfers = nullptr;
  const Authorizer* auth = nullptr;
  const ClientErrors* errors = nullptr;
  ImportGate* import_gate = nullptr;
  StreamWatchdog* watchdog = nullptr;      // idle and time limits of transfer streams
  std::string temp_dir;  // export/import files: next to the database (same filesystem)
};

using RawTunerService = v1::Tuner::WithRawCallbackMethod_GetBestConfig<
    v1::Tuner::WithRawCallbackMethod_SubmitTuning<v1::Tuner::WithRawCallbackMethod_WatchJob<
        v1::Tuner::WithRawCallbackMethod_CancelJob<v1::Tuner::WithRawCallbackMethod_ListJobs<
            v1::Tuner::WithRawCallbackMethod_ListConfigs<v1::Tuner::WithRawCallbackMethod_ExportResults<
                v1::Tuner::WithRawCallbackMethod_ImportResults<v1::Tuner::Service>>>>>>>>;

class TunerService final : public RawTunerService {
 public:
  explicit TunerService(ServiceDeps deps) : d_(std::move(deps)) {}

  grpc::ServerUnaryReactor* GetBestConfig(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* req,
                                          grpc::ByteBuffer* resp) override;
  grpc::ServerUnaryReactor* SubmitTuning(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* req,
                                         grpc::ByteBuffer* resp) override;
  grpc::ServerWriteReactor<grpc::ByteBuffer>* WatchJob(grpc::CallbackServerContext* ctx,
                                                       const grpc::ByteBuffer* req) override;
  grpc::ServerUnaryReactor* CancelJob(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* req,
                                      grpc::ByteBuffer* resp) override;
  grpc::ServerUnaryReactor* ListJobs(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* req,
                                     grpc::ByteBuffer* resp) override;
  grpc::ServerUnaryReactor* ListConfigs(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* req,
                                        grpc::ByteBuffer* resp) override;
  grpc::ServerWriteReactor<grpc::ByteBuffer>* ExportResults(grpc::CallbackServerContext* ctx,
                                                            const grpc::ByteBuffer* req) override;
  grpc::ServerReadReactor<grpc::ByteBuffer>* ImportResults(grpc::CallbackServerContext* ctx,
                                                           grpc::ByteBuffer* resp) override;

 private:
  enum class Where { kReactor, kOps };
  // Checks the token, parses the request, runs `work` here or on the ops pool
  // (RESOURCE_EXHAUSTED when its queue is full) and finishes with its status, the response
  // serialized when OK.
  template <typename Req, typename Resp>
  grpc::ServerUnaryReactor* Unary(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* raw,
                                  grpc::ByteBuffer* out, Where where,
                                  std::function<grpc::Status(const Req&, Resp*)> work);

  grpc::Status ListConfigsNow(const v1::ListConfigsRequest& req, v1::ListConfigsResponse* resp);

  ServiceDeps d_;
};

// Streaming reactors (watch_reactor.cc, transfer_reactors.cc).
grpc::ServerWriteReactor<grpc::ByteBuffer>* NewWatchReactor(const ServiceDeps& d, int64_t job_id);
grpc::ServerWriteReactor<grpc::ByteBuffer>* NewExportReactor(const ServiceDeps& d, grpc::CallbackServerContext* ctx);
grpc::ServerReadReactor<grpc::ByteBuffer>* NewImportReactor(const ServiceDeps& d, grpc::CallbackServerContext* ctx,
                                                            grpc::ByteBuffer* resp);

// A stream refused before it started (bad auth or request). gRPC allows finishing in the
// constructor: the operation is queued until the reactor is bound.
template <typename T>
class RejectedWriter final : public grpc::ServerWriteReactor<T> {
 public:
  explicit RejectedWriter(const grpc::Status& status) { this->Finish(status); }
  void OnDone() override { delete this; }
};
template <typename T>
class RejectedReader final : public grpc::ServerReadReactor<T> {
 public:
  explicit RejectedReader(const grpc::Status& status) { this->Finish(status); }
  void OnDone() override { delete this; }
};

}  // namespace parallax::service
