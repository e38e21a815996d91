// A fixed pool of threads with a bounded queue, for RPC work that may wait on the database
// (writes, listings, export/import) and so must not run on gRPC's reactor threads.
//
// A task that throws must neither end the process (an uncaught exception on a pool thread is
// std::terminate) nor leave its RPC unanswered until the client's deadline: the pool logs it
// and runs the task's `if_thrown`, which finishes the call.
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
  bool TrySubmit(std::function<void()> task, std::function<void()> if_thrown = nullptr);
  // Ignores the queue bound: the next step of work already admitted (an export's next
  // chunk). False only when stopping.
  bool SubmitContinuation(std::function<void()> task, std::function<void()> if_thrown = nullptr);
  // Finishes queued tasks and joins; later submissions are refused. Idempotent.
  void Stop();

 private:
  struct Task {
    std::function<void()> run;
    std::function<void()> if_thrown;
  };
  void Loop();
  void RunGuarded(Task& task);

  const std::string name_;
  const size_t max_queued_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Task> tasks_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace parallax::service
