#include "parallax/search/thread_pool.h"

#include <algorithm>

namespace parallax::search {

ThreadPool::ThreadPool(int threads) {
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { Loop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
    queue_.clear();
  }
  cv_.notify_all();
  for (std::thread& t : threads_) t.join();
}

void ThreadPool::Submit(std::function<void()> task, bool urgent) {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (urgent) queue_.push_front(std::move(task));
    else queue_.push_back(std::move(task));
  }
  cv_.notify_one();
}

void ThreadPool::Clear() {
  std::lock_guard<std::mutex> l(mu_);
  queue_.clear();
}

void ThreadPool::Loop() {
  while (true) {
    std::function<void()> task;
    {
      std::unique_lock<std::mutex> l(mu_);
      cv_.wait(l, [this] { return stop_ || !queue_.empty(); });
      if (stop_) return;
      task = std::move(queue_.front());
      queue_.pop_front();
    }
    task();
  }
}

}  // namespace parallax::search
