// The Tuner gRPC service on the callback API. Reactor threads only do in-memory work and
// short reads of the lookup store; anything that writes or may wait on the database runs
// on the ops pool, export/import on the transfer pool.
#pragma once

#include <string>

#include "auth.h"
#include "executor.h"
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
  std::string temp_dir;  // export/import files: next to the database (same filesystem)
};

class TunerService final : public v1::Tuner::CallbackService {
 public:
  explicit TunerService(ServiceDeps deps) : d_(std::move(deps)) {}

  grpc::ServerUnaryReactor* GetBestConfig(grpc::CallbackServerContext* ctx, const v1::GetBestConfigRequest* req,
                                          v1::GetBestConfigResponse* resp) override;
  grpc::ServerUnaryReactor* SubmitTuning(grpc::CallbackServerContext* ctx, const v1::SubmitTuningRequest* req,
                                         v1::SubmitTuningResponse* resp) override;
  grpc::ServerWriteReactor<v1::JobProgress>* WatchJob(grpc::CallbackServerContext* ctx,
                                                      const v1::WatchJobRequest* req) override;
  grpc::ServerUnaryReactor* CancelJob(grpc::CallbackServerContext* ctx, const v1::CancelJobRequest* req,
                                      v1::CancelJobResponse* resp) override;
  grpc::ServerUnaryReactor* ListJobs(grpc::CallbackServerContext* ctx, const v1::ListJobsRequest* req,
                                     v1::ListJobsResponse* resp) override;
  grpc::ServerUnaryReactor* ListConfigs(grpc::CallbackServerContext* ctx, const v1::ListConfigsRequest* req,
                                        v1::ListConfigsResponse* resp) override;
  grpc::ServerWriteReactor<v1::ExportChunk>* ExportResults(grpc::CallbackServerContext* ctx,
                                                           const v1::ExportResultsRequest* req) override;
  grpc::ServerReadReactor<v1::ImportChunk>* ImportResults(grpc::CallbackServerContext* ctx,
                                                          v1::ImportResultsResponse* resp) override;

 private:
  // Runs `work` on the ops pool and finishes the call with its status; RESOURCE_EXHAUSTED
  // when the pool's queue is full.
  grpc::ServerUnaryReactor* OnOps(grpc::CallbackServerContext* ctx, std::function<grpc::Status()> work);

  ServiceDeps d_;
};

// Streaming reactors (watch_reactor.cc, transfer_reactors.cc).
grpc::ServerWriteReactor<v1::JobProgress>* NewWatchReactor(const ServiceDeps& d, int64_t job_id);
grpc::ServerWriteReactor<v1::ExportChunk>* NewExportReactor(const ServiceDeps& d);
grpc::ServerReadReactor<v1::ImportChunk>* NewImportReactor(const ServiceDeps& d, grpc::CallbackServerContext* ctx,
                                                           v1::ImportResultsResponse* resp);

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
