#include "import_limits.h"

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace parallax::service {

ImportGate::Ticket& ImportGate::Ticket::operator=(Ticket&& other) noexcept {
  if (this != &other) {
    Release();
    gate_ = other.gate_;
    bytes_ = other.bytes_;
    other.gate_ = nullptr;
  }
  return *this;
}

void ImportGate::Ticket::Release() {
  if (!gate_) return;
  std::lock_guard lock(gate_->mu_);
  --gate_->active_;
  gate_->reserved_ -= bytes_;
  gate_ = nullptr;
}

absl::StatusOr<ImportGate::Ticket> ImportGate::Admit(int64_t bytes) {
  std::lock_guard lock(mu_);
  if (active_ >= max_streams_)
    return absl::ResourceExhaustedError(absl::StrCat("server busy: ", active_, " import(s) in progress (max_concurrent_imports=",
                                                     max_streams_, "); retry later"));
  if (bytes > max_bytes_ - reserved_)
    return absl::ResourceExhaustedError(absl::StrCat("server busy: total_bytes=", bytes, " does not fit the ",
                                                     max_bytes_ - reserved_, " bytes of temporary space left "
                                                     "(max_import_temp_bytes=", max_bytes_, "); retry later"));
  ++active_;
  reserved_ += bytes;
  Ticket t;
  t.gate_ = this;
  t.bytes_ = bytes;
  return t;
}

int ImportGate::active() const {
  std::lock_guard lock(mu_);
  return active_;
}

int64_t ImportGate::reserved_bytes() const {
  std::lock_guard lock(mu_);
  return reserved_;
}

void StreamWatchdog::Watch::StartWaiting(const std::function<void()>& start_io) {
  std::lock_guard lock(mu_);
  waiting_ = true;
  since_ = absl::Now();
  start_io();
}

void StreamWatchdog::Watch::StopWaiting() {
  std::lock_guard lock(mu_);
  waiting_ = false;
}

void StreamWatchdog::Watch::Detach() {
  std::lock_guard lock(mu_);
  done_ = true;
}

void StreamWatchdog::Watch::Check(absl::Time now) {
  std::lock_guard lock(mu_);
  if (done_ || !waiting_) return;
  std::string why;
  if (now - since_ > idle_limit_) {
    why = absl::StrCat("no progress from the client for ", absl::FormatDuration(idle_limit_),
                       " (the server's idle limit for transfers); the stream was ended");
  } else if (now > deadline_) {
    why = "the transfer ran past the server's time limit (import_time_limit_ms); the stream was ended";
  } else {
    return;
  }
  done_ = true;
  end_(grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, why));  // may run Detach inline: mu_ is recursive
}

StreamWatchdog::StreamWatchdog(absl::Duration tick) : tick_(tick), thread_([this] { Loop(); }) {}

StreamWatchdog::~StreamWatchdog() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

std::shared_ptr<StreamWatchdog::Watch> StreamWatchdog::Add(absl::Duration idle_limit, absl::Time deadline,
                                                           std::function<void(const grpc::Status&)> end) {
  std::shared_ptr<Watch> w(new Watch(idle_limit, deadline, std::move(end)));
  std::lock_guard lock(mu_);
  watches_.push_back(w);
  return w;
}

void StreamWatchdog::Loop() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    cv_.wait_for(lock, absl::ToChronoNanoseconds(tick_), [&] { return stopping_; });
    if (stopping_) break;
    // Watches whose stream is gone hold only this vector's reference.
    std::erase_if(watches_, [](const std::shared_ptr<Watch>& w) { return w.use_count() == 1; });
    std::vector<std::shared_ptr<Watch>> now_watched = watches_;
    lock.unlock();  // `end` may run OnDone, which must not wait for this loop
    const absl::Time now = absl::Now();
    for (const std::shared_ptr<Watch>& w : now_watched) w->Check(now);
    lock.lock();
  }
}

}  // namespace parallax::service
