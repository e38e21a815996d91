// Who else is tuning into this database file: every tuner holds a shared flock on
// "<db>.lock" while it runs. Getting it exclusively first means no other tuner is alive, so
// runs still marked 'running' were left by a crash and can be marked 'interrupted'.
// The service's job manager holds one for the server's whole life (and marks stale runs only
// when it was alone), so neither a tuner it starts nor a CLI tuner beside it takes the other's
// running rows for a crash's leftovers.
#pragma once

#include <functional>
#include <string>

namespace parallax::cache {

class RunLock {
 public:
  // if_alone runs while the lock is still exclusive, so no tuner can start meanwhile.
  RunLock(const std::string& db_path, const std::function<void()>& if_alone);
  ~RunLock();
  RunLock(const RunLock&) = delete;
  RunLock& operator=(const RunLock&) = delete;
  bool alone() const { return alone_; }  // no other tuner held the lock when we took it

 private:
  int fd_ = -1;
  bool alone_ = false;
};

}  // namespace parallax::cache
