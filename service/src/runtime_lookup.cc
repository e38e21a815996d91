#include "parallax/service/runtime_lookup.h"

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "parallax/codegen/bucket.h"
#include "parallax/service/proto_convert.h"

namespace parallax::service {
namespace {

using Answer = absl::StatusOr<std::pair<std::string, Choice>>;

// Shared by copies of the lookup function: the client and what it has been told.
class RemoteConfigs {
 public:
  RemoteConfigs(std::unique_ptr<Client> client, v1::DeviceFingerprint device, absl::Duration retry_after)
      : client_(std::move(client)), device_(std::move(device)), retry_after_(retry_after) {}

  // The service answers one row per bucket, so a row the caller cannot use is a miss here
  // (the runtime then takes its default); the service itself serves only rows that parse,
  // fit the problem and run on the asking device (config_lookup.h).
  Answer Get(const Problem& p, const Algorithm& a, const ShapeBucket& bucket, const TunedKeyFilter& usable) {
    Answer answer = Ask(p, a, bucket);
    if (answer.ok() && usable && !usable(answer->first))
      return absl::NotFoundError(absl::StrCat("the service's config ", answer->first, " cannot run here"));
    return answer;
  }

 private:
  Answer Ask(const Problem& p, const Algorithm& a, const ShapeBucket& bucket) {
    const std::string key = absl::StrCat(ProblemKey(p, a), "|", ToString(bucket));
    {
      std::lock_guard<std::mutex> l(mu_);
      auto it = known_.find(key);
      if (it != known_.end() && (it->second.answer.ok() || absl::Now() < it->second.retry_at))
        return it->second.answer;
    }
    // Not under the lock: one slow call must not hold up plans of other problems.
    v1::GetBestConfigRequest r;
    *r.mutable_device() = device_;
    // A shape of the bucket: the service buckets it again, to the same bucket.
    const BucketShape sh = ShapeOf(bucket);
    *r.mutable_problem() = IsPrefillBucket(bucket) ? ProblemToProto(p, a, sh.batch, sh.q_len, sh.seqlen)
                                                   : ProblemToProto(p, a, sh.batch, sh.seqlen);
    absl::StatusOr<v1::GetBestConfigResponse> got = client_->GetBestConfig(r);
    Answer answer = absl::NotFoundError("the service has no tuned config");
    if (!got.ok()) {
      answer = got.status();
    } else if (got->match() == v1::MATCH_EXACT) {
      answer = std::make_pair(got->variant_key(), Choice::kTunedExact);
    } else if (got->match() == v1::MATCH_NEAREST_BUCKET) {
      answer = std::make_pair(got->variant_key(), Choice::kTunedNearest);
    }
    std::lock_guard<std::mutex> l(mu_);
    known_[key] = {answer, absl::Now() + retry_after_};
    return answer;
  }

  struct Known {
    Answer answer = absl::UnknownError("unset");
    absl::Time retry_at;
  };
  const std::unique_ptr<Client> client_;
  const v1::DeviceFingerprint device_;
  const absl::Duration retry_after_;
  std::mutex mu_;
  std::map<std::string, Known> known_;
};

}  // namespace

absl::StatusOr<Runtime::TunedLookup> MakeServiceLookup(const DeviceInfo& device, const ServiceLookupOptions& options) {
  absl::StatusOr<std::unique_ptr<Client>> client = Client::Connect(options.client);
  if (!client.ok()) return client.status();
  auto remote = std::make_shared<RemoteConfigs>(*std::move(client), DeviceToProto(device), options.retry_after);
  return Runtime::TunedLookup([remote](const Problem& p, const Algorithm& a, const ShapeBucket& bucket,
                                       const TunedKeyFilter& usable) { return remote->Get(p, a, bucket, usable); });
}

absl::Status AttachTuningService(Runtime& rt, const ServiceLookupOptions& options) {
  absl::StatusOr<Runtime::TunedLookup> remote = MakeServiceLookup(rt.device(), options);
  if (!remote.ok()) return remote.status();
  Runtime::TunedLookup local = rt.tuned_lookup();
  // The local database answers with a row the caller can use, or the service is asked.
  rt.SetTunedLookup([local, remote = *std::move(remote)](const Problem& p, const Algorithm& a,
                                                          const ShapeBucket& bucket,
                                                          const TunedKeyFilter& usable) -> Answer {
    if (local) {
      Answer mine = local(p, a, bucket, usable);
      if (mine.ok()) return mine;
    }
    return remote(p, a, bucket, usable);
  });
  return absl::OkStatus();
}

}  // namespace parallax::service
