// WatchJob: streams a job's snapshots until a terminal one. Writes are coalesced: at most
// one in flight, and only the newest pending snapshot is sent next, so a slow client never
// makes the job manager (which notifies under its lock) wait.
#include <mutex>
#include <optional>

#include "absl/strings/str_cat.h"
#include "job_records.h"
#include "raw_messages.h"
#include "tuner_service.h"

namespace parallax::service {
namespace {

class WatchReactor final : public grpc::ServerWriteReactor<grpc::ByteBuffer>, public JobWatcher {
 public:
  WatchReactor(const ServiceDeps& d, int64_t job_id) : d_(d), job_id_(job_id) {
    // Once registered, notifications may arrive on a worker thread before this body ends;
    // everything they touch is guarded by mu_.
    std::optional<v1::JobProgress> snapshot = d_.jobs->Watch(job_id_, this);
    if (!snapshot) {
      // Not live in this process: the stored row is the whole story.
      absl::StatusOr<cache::RunInfo> run = d_.lookup_store->GetRun(job_id_);
      if (!run.ok()) {
        FinishOnce(absl::IsNotFound(run.status())
                       ? grpc::Status(grpc::StatusCode::NOT_FOUND, absl::StrCat("job ", job_id_, ": no such job"))
                       : grpc::Status(grpc::StatusCode::UNAVAILABLE, std::string(run.status().message())));
        return;
      }
      snapshot = ProgressFromRun(*run);
      follow_ = false;  // not registered: no writes can be in flight yet
    }
    std::lock_guard lock(mu_);
    if (!pending_) pending_ = std::move(snapshot);  // a notification that raced in is newer
    WriteNextLocked();
  }

  void OnProgress(const v1::JobProgress& p) override {
    std::lock_guard lock(mu_);
    if (finished_) return;
    pending_ = p;
    WriteNextLocked();
  }

  void OnWriteDone(bool ok) override {
    std::unique_lock lock(mu_);
    writing_ = false;
    if (!ok || cancelled_) {
      lock.unlock();
      FinishOnce({grpc::StatusCode::CANCELLED, "watch cancelled"});
      return;
    }
    if (!pending_ && (IsTerminal(in_flight_state_) || !follow_)) {
      lock.unlock();
      FinishOnce(grpc::Status::OK);
      return;
    }
    WriteNextLocked();
  }

  void OnCancel() override {
    std::unique_lock lock(mu_);
    cancelled_ = true;
    if (writing_) return;  // OnWriteDone finishes
    lock.unlock();
    FinishOnce({grpc::StatusCode::CANCELLED, "watch cancelled"});
  }

  void OnDone() override {
    d_.jobs->Unwatch(job_id_, this);  // waits out a notification in progress
    delete this;
  }

 private:
  void WriteNextLocked() {
    if (writing_ || finished_ || !pending_) return;
    in_flight_state_ = pending_->state();
    in_flight_.Clear();
    // Fails only past 2 GiB. Finishing here is not an option: this may run under the job
    // manager's lock, and Finish may run OnDone (which takes it) inline.
    (void)SerializeRaw(*pending_, &in_flight_);
    pending_.reset();
    writing_ = true;
    StartWrite(&in_flight_);
  }

  void FinishOnce(const grpc::Status& status) {
    {
      std::lock_guard lock(mu_);
      if (finished_) return;
      finished_ = true;
    }
    Finish(d_.errors->Scrub(status));  // last touch of `this`: OnDone may run right after
  }

  const ServiceDeps& d_;
  const int64_t job_id_;
  bool follow_ = true;  // live job: more snapshots come until a terminal one

  std::mutex mu_;
  bool writing_ = false;
  bool finished_ = false;
  bool cancelled_ = false;
  std::optional<v1::JobProgress> pending_;
  grpc::ByteBuffer in_flight_;  // must stay put until OnWriteDone
  v1::JobState in_flight_state_ = v1::JOB_STATE_UNSPECIFIED;
};

}  // namespace

grpc::ServerWriteReactor<grpc::ByteBuffer>* NewWatchReactor(const ServiceDeps& d, int64_t job_id) {
  return new WatchReactor(d, job_id);
}

}  // namespace parallax::service
