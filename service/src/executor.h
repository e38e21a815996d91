// A fixed pool of threads with a bounded queue, for RPC work that may wait on the database
// (writes, listings, export/import) and so must not run on gRPC's reactor threads.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace parallax::service {

class Executor {
 public:
  Executor(std::string name, int threads, int max_queued);
  ~Executor();  // runs what is queued, then joins
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  // False when the queue is full or the pool is stopping; the caller answers
  // RESOURCE_EXHAUSTED / UNAVAILABLE itself.
  bool TrySubmit(std::function<void()> task);
  // Ignores the queue bound: the next step of work already admitted (an export's next
  // chunk). False only when stopping.
  bool SubmitContinuation(std::function<void()> task);
  // Finishes queued tasks and joins; later submissions are refused. Idempotent.
  void Stop();

 private:
  void Loop();

  const std::string name_;
  const size_t max_queued_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace parallax::service
