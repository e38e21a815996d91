#include "executor.h"

#include <exception>

#include <spdlog/spdlog.h>

namespace parallax::service {

Executor::Executor(std::string name, int threads, int max_queued)
    : name_(std::move(name)), max_queued_(static_cast<size_t>(max_queued)) {
  for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { Loop(); });
}

Executor::~Executor() { Stop(); }

bool Executor::TrySubmit(std::function<void()> task, std::function<void()> if_thrown) {
  {
    std::lock_guard lock(mu_);
    if (stopping_ || tasks_.size() >= max_queued_) return false;
    tasks_.push_back({std::move(task), std::move(if_thrown)});
  }
  cv_.notify_one();
  return true;
}

bool Executor::SubmitContinuation(std::function<void()> task, std::function<void()> if_thrown) {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return false;
    tasks_.push_back({std::move(task), std::move(if_thrown)});
  }
  cv_.notify_one();
  return true;
}

void Executor::Stop() {
  {
    std::lock_guard lock(mu_);
    if (stopping_ && threads_.empty()) return;
    stopping_ = true;
  }
  cv_.notify_all();
  for (std::thread& t : threads_) t.join();
  threads_.clear();
}

void Executor::RunGuarded(Task& task) {
  const char* what = nullptr;
  try {
    task.run();
    return;
  } catch (const std::exception& e) {
    spdlog::error("{} pool: a task threw: {}", name_, e.what());
    what = "exception";
  } catch (...) {
    spdlog::error("{} pool: a task threw a non-exception", name_);
    what = "non-exception";
  }
  if (!task.if_thrown) return;
  try {
    task.if_thrown();
  } catch (...) {
    spdlog::error("{} pool: the recovery of a task that threw ({}) threw too", name_, what);
  }
}

void Executor::Loop() {
  while (true) {
    Task task;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !tasks_.empty(); });
      if (tasks_.empty()) return;  // stopping and drained
      task = std::move(tasks_.front());
      tasks_.pop_front();
    }
    RunGuarded(task);
  }
}

}  // namespace parallax::service
