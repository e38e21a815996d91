#include "tuner_service.h"

#include <algorithm>
#include <exception>
#include <memory>
#include <utility>

#include <spdlog/spdlog.h>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "parallax/codegen/bucket.h"
#include "parallax/service/config_lookup.h"
#include "parallax/service/validate.h"
#include "raw_messages.h"
#include "status_util.h"

namespace parallax::service {
namespace {

grpc::Status Invalid(const std::string& message) { return {grpc::StatusCode::INVALID_ARGUMENT, message}; }

const grpc::Status kInternal(grpc::StatusCode::INTERNAL, "internal error (see the server log)");

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

// Page tokens are this server's own offsets, so only what it writes is accepted: 1 to 18
// decimal digits (no sign, no spaces; 18 digits cannot overflow int64 even plus a page).
bool ParsePageToken(absl::string_view token, int64_t* offset) {
  if (token.empty() || token.size() > 18) return false;
  int64_t value = 0;
  for (char c : token) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return false;
    value = value * 10 + (c - '0');
  }
  *offset = value;
  return true;
}

}  // namespace

template <typename Req, typename Resp>
grpc::ServerUnaryReactor* TunerService::Unary(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* raw,
                                              grpc::ByteBuffer* out, Where where,
                                              std::function<grpc::Status(const Req&, Resp*)> work) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  if (grpc::Status s = d_.auth->Check(ctx); !s.ok()) {
    reactor->Finish(s);
    return reactor;
  }
  auto call = std::make_shared<std::pair<Req, Resp>>();
  if (grpc::Status s = ParseRaw(*raw, &call->first); !s.ok()) {
    reactor->Finish(s);
    return reactor;
  }
  // Finish is the last thing `run` does, so `thrown` never finishes a second time.
  auto run = [reactor, out, call, errors = d_.errors, work = std::move(work)] {
    grpc::Status s = work(call->first, &call->second);
    if (s.ok()) s = SerializeRaw(call->second, out);
    reactor->Finish(errors->Scrub(s));
  };
  auto thrown = [reactor] { reactor->Finish(kInternal); };
  if (where == Where::kReactor) {
    try {
      run();
    } catch (const std::exception& e) {
      spdlog::error("{}: the handler threw: {}", Req::descriptor()->name(), e.what());
      thrown();
    } catch (...) {
      spdlog::error("{}: the handler threw a non-exception", Req::descriptor()->name());
      thrown();
    }
    return reactor;
  }
  if (!d_.ops->TrySubmit(std::move(run), std::move(thrown)))
    reactor->Finish({grpc::StatusCode::RESOURCE_EXHAUSTED, "server busy: too many requests in flight; retry later"});
  return reactor;
}

grpc::ServerUnaryReactor* TunerService::GetBestConfig(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* req,
                                                      grpc::ByteBuffer* resp) {
  // The hot path: validation, one indexed read and the default variant, all on this thread.
  return Unary<v1::GetBestConfigRequest, v1::GetBestConfigResponse>(
      ctx, req, resp, Where::kReactor, [this](const v1::GetBestConfigRequest& r, v1::GetBestConfigResponse* out) {
        absl::StatusOr<LookupQuery> q = ValidateLookup(r, d_.limits);
        if (!q.ok()) return ToGrpc(q.status());
        absl::StatusOr<v1::GetBestConfigResponse> found = LookupBestConfig(*d_.lookup_cache, *q);
        if (found.ok()) *out = *std::move(found);
        return ToGrpc(found.status());
      });
}

grpc::ServerUnaryReactor* TunerService::SubmitTuning(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* req,
                                                     grpc::ByteBuffer* resp) {
  return Unary<v1::SubmitTuningRequest, v1::SubmitTuningResponse>(
      ctx, req, resp, Where::kOps, [this](const v1::SubmitTuningRequest& r, v1::SubmitTuningResponse* out) {
        absl::StatusOr<v1::SubmitTuningResponse> s = d_.jobs->Submit(r);
        if (s.ok()) *out = *std::move(s);
        return ToGrpc(s.status());
      });
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* TunerService::WatchJob(grpc::CallbackServerContext* ctx,
                                                                   const grpc::ByteBuffer* raw) {
  if (grpc::Status s = d_.auth->Check(ctx); !s.ok()) return new RejectedWriter<grpc::ByteBuffer>(s);
  v1::WatchJobRequest req;
  if (grpc::Status s = ParseRaw(*raw, &req); !s.ok()) return new RejectedWriter<grpc::ByteBuffer>(s);
  if (req.job_id() <= 0)
    return new RejectedWriter<grpc::ByteBuffer>(Invalid(absl::StrCat("job_id=", req.job_id(), ": must be > 0")));
  return NewWatchReactor(d_, req.job_id());
}

grpc::ServerUnaryReactor* TunerService::CancelJob(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* req,
                                                  grpc::ByteBuffer* resp) {
  return Unary<v1::CancelJobRequest, v1::CancelJobResponse>(
      ctx, req, resp, Where::kOps, [this](const v1::CancelJobRequest& r, v1::CancelJobResponse* out) {
        if (r.job_id() <= 0) return Invalid(absl::StrCat("job_id=", r.job_id(), ": must be > 0"));
        absl::StatusOr<v1::JobProgress> p = d_.jobs->Cancel(r.job_id());
        if (p.ok()) *out->mutable_progress() = *std::move(p);
        return ToGrpc(p.status());
      });
}

grpc::ServerUnaryReactor* TunerService::ListJobs(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* req,
                                                 grpc::ByteBuffer* resp) {
  return Unary<v1::ListJobsRequest, v1::ListJobsResponse>(
      ctx, req, resp, Where::kOps, [this](const v1::ListJobsRequest& r, v1::ListJobsResponse* out) {
        if (grpc::Status s = CheckPageSize("limit", r.limit(), d_.limits); !s.ok()) return s;
        if (!v1::JobState_IsValid(r.state()))
          return Invalid(absl::StrCat("state=", static_cast<int>(r.state()), ": unknown"));
        absl::StatusOr<std::vector<v1::JobProgress>> jobs =
            d_.jobs->List(r.limit() > 0 ? r.limit() : d_.limits.default_list_page, r.state());
        if (!jobs.ok()) return ToGrpc(jobs.status());
        for (v1::JobProgress& p : *jobs) *out->add_jobs() = std::move(p);
        return grpc::Status::OK;
      });
}

grpc::ServerUnaryReactor* TunerService::ListConfigs(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* req,
                                                    grpc::ByteBuffer* resp) {
  return Unary<v1::ListConfigsRequest, v1::ListConfigsResponse>(
      ctx, req, resp, Where::kOps,
      [this](const v1::ListConfigsRequest& r, v1::ListConfigsResponse* out) { return ListConfigsNow(r, out); });
}

grpc::Status TunerService::ListConfigsNow(const v1::ListConfigsRequest& req, v1::ListConfigsResponse* resp) {
  if (grpc::Status s = CheckFilter("device_fingerprint", req.device_fingerprint(), d_.limits); !s.ok()) return s;
  if (grpc::Status s = CheckFilter("problem_key", req.problem_key(), d_.limits); !s.ok()) return s;
  if (grpc::Status s = CheckPageSize("page_size", req.page_size(), d_.limits); !s.ok()) return s;
  // The page token is the offset of the page's first entry in the filtered listing.
  int64_t offset = 0;
  if (!req.page_token().empty() && !ParsePageToken(req.page_token(), &offset))
    return Invalid(absl::StrCat("page_token=", Echo(req.page_token()), ": not a token from ListConfigs"));
  cache::BestConfigFilter filter;
  if (!req.device_fingerprint().empty()) filter.device_fingerprint = req.device_fingerprint();
  if (!req.problem_key().empty()) filter.problem_key = req.problem_key();
  absl::StatusOr<std::vector<cache::BestConfig>> rows = d_.list_store->ListBestConfigs(filter);
  if (!rows.ok()) return ToGrpc(rows.status());
  // Buckets in numeric order (b1-l4096 before b1-l16384), so pages follow it too.
  std::stable_sort(rows->begin(), rows->end(), [](const cache::BestConfig& a, const cache::BestConfig& b) {
    if (a.device_fingerprint != b.device_fingerprint) return a.device_fingerprint < b.device_fingerprint;
    if (a.problem_key != b.problem_key) return a.problem_key < b.problem_key;
    return BucketLess(a.bucket, b.bucket);
  });
  const int64_t page = req.page_size() > 0 ? req.page_size() : d_.limits.default_list_page;
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
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* TunerService::ExportResults(grpc::CallbackServerContext* ctx,
                                                                        const grpc::ByteBuffer* raw) {
  if (grpc::Status s = d_.auth->Check(ctx); !s.ok()) return new RejectedWriter<grpc::ByteBuffer>(s);
  v1::ExportResultsRequest req;
  if (grpc::Status s = ParseRaw(*raw, &req); !s.ok()) return new RejectedWriter<grpc::ByteBuffer>(s);
  return NewExportReactor(d_, ctx);
}

grpc::ServerReadReactor<grpc::ByteBuffer>* TunerService::ImportResults(grpc::CallbackServerContext* ctx,
                                                                       grpc::ByteBuffer* resp) {
  if (grpc::Status s = d_.auth->Check(ctx); !s.ok()) return new RejectedReader<grpc::ByteBuffer>(s);
  return NewImportReactor(d_, ctx, resp);
}

}  // namespace parallax::service
