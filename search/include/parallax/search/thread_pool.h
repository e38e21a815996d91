// A fixed set of threads running queued tasks, urgent ones first; used to compile
// candidates on every CPU core ahead of the measuring queue.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace parallax::search {

class ThreadPool {
 public:
  explicit ThreadPool(int threads);  // <= 0: std::thread::hardware_concurrency()
  ~ThreadPool();                     // drops queued tasks, waits for running ones
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  void Submit(std::function<void()> task, bool urgent = false);
  // Drops every task not yet started.
  void Clear();
  int size() const { return static_cast<int>(threads_.size()); }

 private:
  void Loop();
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace parallax::search
