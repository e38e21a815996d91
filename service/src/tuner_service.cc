#include "tuner_service.h"

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "parallax/service/config_lookup.h"
#include "parallax/service/validate.h"
#include "status_util.h"

namespace parallax::service {
namespace {

grpc::Status Invalid(const std::string& message) { return {grpc::StatusCode::INVALID_ARGUMENT, message}; }

grpc::Status CheckFilter(absl::string_view field, const std::string& value, const ServiceLimits& limits) {
  if (static_cast<int>(value.size()) > limits.max_string_bytes)
    return Invalid(absl::StrCat(field, ": longer than ", limits.max_string_bytes, " bytes"));
  return grpc::Status::OK;
}

grpc::Status CheckPageSize(absl::string_view field, int value, const ServiceLimits& limits) {
  if (value < 0 || value > limits.max_list_page)
    return Invalid(absl::StrCat(field, "=", value, ": must be in 0..", limits.max_list_page));
  return grpc::Status::OK;
}

grpc::ServerUnaryReactor* Done(grpc::CallbackServerContext* ctx, const grpc::Status& status) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  reactor->Finish(status);
  return reactor;
}

}  // namespace

grpc::ServerUnaryReactor* TunerService::OnOps(grpc::CallbackServerContext* ctx, std::function<grpc::Status()> work) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  if (!d_.ops->TrySubmit([reactor, work = std::move(work)] { reactor->Finish(work()); }))
    reactor->Finish({grpc::StatusCode::RESOURCE_EXHAUSTED, "server busy: too many requests in flight; retry later"});
  return reactor;
}

grpc::ServerUnaryReactor* TunerService::GetBestConfig(grpc::CallbackServerContext* ctx,
                                                      const v1::GetBestConfigRequest* req,
                                                      v1::GetBestConfigResponse* resp) {
  // The hot path: validation, one indexed read and the default variant, all on this thread.
  if (grpc::Status s = d_.auth->Check(ctx); !s.ok()) return Done(ctx, s);
  absl::StatusOr<LookupQuery> q = ValidateLookup(*req, d_.limits);
  if (!q.ok()) return Done(ctx, ToGrpc(q.status()));
  absl::StatusOr<v1::GetBestConfigResponse> found = LookupBestConfig(*d_.lookup_cache, *q);
  if (found.ok()) *resp = *std::move(found);
  return Done(ctx, ToGrpc(found.status()));
}

grpc::ServerUnaryReactor* TunerService::SubmitTuning(grpc::CallbackServerContext* ctx,
                                                     const v1::SubmitTuningRequest* req,
                                                     v1::SubmitTuningResponse* resp) {
  if (grpc::Status s = d_.auth->Check(ctx); !s.ok()) return Done(ctx, s);
  return OnOps(ctx, [this, req, resp] {
    absl::StatusOr<v1::SubmitTuningResponse> r = d_.jobs->Submit(*req);
    if (r.ok()) *resp = *std::move(r);
    return ToGrpc(r.status());
  });
}

grpc::ServerWriteReactor<v1::JobProgress>* TunerService::WatchJob(grpc::CallbackServerContext* ctx,
                                                                  const v1::WatchJobRequest* req) {
  if (grpc::Status s = d_.auth->Check(ctx); !s.ok()) return new RejectedWriter<v1::JobProgress>(s);
  if (req->job_id() <= 0)
    return new RejectedWriter<v1::JobProgress>(Invalid(absl::StrCat("job_id=", req->job_id(), ": must be > 0")));
  return NewWatchReactor(d_, req->job_id());
}

grpc::ServerUnaryReactor* TunerService::CancelJob(grpc::CallbackServerContext* ctx, const v1::CancelJobRequest* req,
                                                  v1::CancelJobResponse* resp) {
  if (grpc::Status s = d_.auth->Check(ctx); !s.ok()) return Done(ctx, s);
  if (req->job_id() <= 0) {
    return Done(ctx, Invalid(absl::StrCat("job_id=", req->job_id(), ": must be > 0")));
  }
  return OnOps(ctx, [this, req, resp] {
    absl::StatusOr<v1::JobProgress> p = d_.jobs->Cancel(req->job_id());
    if (p.ok()) *resp->mutable_progress() = *std::move(p);
    return ToGrpc(p.status());
  });
}

grpc::ServerUnaryReactor* TunerService::ListJobs(grpc::CallbackServerContext* ctx, const v1::ListJobsRequest* req,
                                                 v1::ListJobsResponse* resp) {
  if (grpc::Status s = d_.auth->Check(ctx); !s.ok()) return Done(ctx, s);
  return OnOps(ctx, [this, req, resp] {
    if (grpc::Status s = CheckPageSize("limit", req->limit(), d_.limits); !s.ok()) return s;
    if (!v1::JobState_IsValid(req->state()))
      return Invalid(absl::StrCat("state=", static_cast<int>(req->state()), ": unknown"));
    absl::StatusOr<std::vector<v1::JobProgress>> jobs =
        d_.jobs->List(req->limit() > 0 ? req->limit() : d_.limits.default_list_page, req->state());
    if (!jobs.ok()) return ToGrpc(jobs.status());
    for (v1::JobProgress& p : *jobs) *resp->add_jobs() = std::move(p);
    return grpc::Status::OK;
  });
}

grpc::ServerUnaryReactor* TunerService::ListConfigs(grpc::CallbackServerContext* ctx,
                                                    const v1::ListConfigsRequest* req,
                                                    v1::ListConfigsResponse* resp) {
  if (grpc::Status s = d_.auth->Check(ctx); !s.ok()) return Done(ctx, s);
  return OnOps(ctx, [this, req, resp] {
    if (grpc::Status s = CheckFilter("device_fingerprint", req->device_fingerprint(), d_.limits); !s.ok()) return s;
    if (grpc::Status s = CheckFilter("problem_key", req->problem_key(), d_.limits); !s.ok()) return s;
    if (grpc::Status s = CheckPageSize("page_size", req->page_size(), d_.limits); !s.ok()) return s;
    // The page token is the offset of the page's first entry in the filtered listing.
    int64_t offset = 0;
    if (!req->page_token().empty() && (!absl::SimpleAtoi(req->page_token(), &offset) || offset < 0))
      return Invalid(absl::StrCat("page_token='", req->page_token(), "': not a token from ListConfigs"));
    cache::BestConfigFilter filter;
    if (!req->device_fingerprint().empty()) filter.device_fingerprint = req->device_fingerprint();
    if (!req->problem_key().empty()) filter.problem_key = req->problem_key();
    absl::StatusOr<std::vector<cache::BestConfig>> rows = d_.list_store->ListBestConfigs(filter);
    if (!rows.ok()) return ToGrpc(rows.status());
    const int64_t page = req->page_size() > 0 ? req->page_size() : d_.limits.default_list_page;
    const int64_t total = static_cast<int64_t>(rows->size());
    const int64_t end = std::min(total, offset + page);
    for (int64_t i = std::min(offset, total); i < end; ++i) {
      const cache::BestConfig& row = (*rows)[i];
      v1::ConfigEntry* e = resp->add_configs();
      e->set_device_fingerprint(row.device_fingerprint);
      e->set_problem_key(row.problem_key);
      e->set_bucket(row.bucket);
      e->set_variant_key(row.variant_key);
      e->set_median_us(row.median_us);
      e->set_generator_version(row.generator_version);
      e->set_nvrtc_version(row.nvrtc_version);
      e->set_updated_at_unix_ms(row.updated_at);
      e->set_stale(row.generator_version != kGeneratorVersion);
    }
    if (end < total) resp->set_next_page_token(absl::StrCat(end));
    return grpc::Status::OK;
  });
}

grpc::ServerWriteReactor<v1::ExportChunk>* TunerService::ExportResults(grpc::CallbackServerContext* ctx,
                                                                       const v1::ExportResultsRequest*) {
  if (grpc::Status s = d_.auth->Check(ctx); !s.ok()) return new RejectedWriter<v1::ExportChunk>(s);
  return NewExportReactor(d_);
}

grpc::ServerReadReactor<v1::ImportChunk>* TunerService::ImportResults(grpc::CallbackServerContext* ctx,
                                                                      v1::ImportResultsResponse* resp) {
  if (grpc::Status s = d_.auth->Check(ctx); !s.ok()) return new RejectedReader<v1::ImportChunk>(s);
  return NewImportReactor(d_, ctx, resp);
}

}  // namespace parallax::service
