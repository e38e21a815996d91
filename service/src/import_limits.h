// Limits on transfer streams that a client could otherwise hold open: ImportGate admits
// ImportResults uploads (how many at once, how much temporary disk they may fill), and
// StreamWatchdog ends streams that wait on their client too long.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace parallax::service {

// The declared total_bytes of every upload is reserved at its first chunk, so the disk cannot
// fill halfway through, and released when the stream ends, however it ends.
class ImportGate {
 public:
  class Ticket {
   public:
    Ticket() = default;
    Ticket(Ticket&& other) noexcept { *this = std::move(other); }
    Ticket& operator=(Ticket&& other) noexcept;
    ~Ticket() { Release(); }
    explicit operator bool() const { return gate_ != nullptr; }
    // Gives the place back now (idempotent; the destructor calls it too).
    void Release();

   private:
    friend class ImportGate;
    ImportGate* gate_ = nullptr;
    int64_t bytes_ = 0;
  };

  ImportGate(int max_streams, int64_t max_bytes) : max_streams_(max_streams), max_bytes_(max_bytes) {}
  // RESOURCE_EXHAUSTED naming the limit that is full.
  absl::StatusOr<Ticket> Admit(int64_t bytes);
  int active() const;
  int64_t reserved_bytes() const;

 private:
  const int max_streams_;
  const int64_t max_bytes_;
  mutable std::mutex mu_;
  int active_ = 0;
  int64_t reserved_ = 0;
};

// Ends streams, from one thread, that have waited for their client longer than their idle
// limit or are past their deadline (both DEADLINE_EXCEEDED). A stream is only ended while it
// waits for the client, so no pool task can be using it at that moment.
class StreamWatchdog {
 public:
  class Watch {
   public:
    // Runs `start_io` (the stream's next read or write) with the idle clock started; the
    // watchdog may end the stream from then until StopWaiting.
    void StartWaiting(const std::function<void()>& start_io);
    // From the read/write reaction, first thing: after it returns the watchdog leaves the
    // stream alone (if it ended it meanwhile, the stream's own finished flag says so).
    void StopWaiting();
    // From OnDone: `end` is never called after this returns.
    void Detach();

   private:
    friend class StreamWatchdog;
    Watch(absl::Duration idle_limit, absl::Time deadline, std::function<void(const grpc::Status&)> end)
        : idle_limit_(idle_limit), deadline_(deadline), end_(std::move(end)) {}
    void Check(absl::Time now);

    const absl::Duration idle_limit_;
    const absl::Time deadline_;
    const std::function<void(const grpc::Status&)> end_;
    // Recursive: `end_` may run OnDone, and so Detach, inline on the watchdog's thread, and
    // `start_io` may run the reaction, and so StopWaiting, inline.
    std::recursive_mutex mu_;
    bool waiting_ = false;
    bool done_ = false;  // ended by the watchdog, or detached
    absl::Time since_;
  };

  explicit StreamWatchdog(absl::Duration tick);
  ~StreamWatchdog();
  StreamWatchdog(const StreamWatchdog&) = delete;
  StreamWatchdog& operator=(const StreamWatchdog&) = delete;

  // InfiniteDuration / InfiniteFuture: no such limit. `end` finishes the stream.
  std::shared_ptr<Watch> Add(absl::Duration idle_limit, absl::Time deadline,
                             std::function<void(const grpc::Status&)> end);

 private:
  void Loop();

  const absl::Duration tick_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::vector<std::shared_ptr<Watch>> watches_;
  std::thread thread_;
};

}  // namespace parallax::service
