#pragma once
// fork() helpers for the multi-process tests. The parent must hold no open sqlite
// connection when forking: sqlite's per-process lock bookkeeping must not be inherited.

#include <sys/types.h>

#include <functional>
#include <string>

namespace parallax::cache::testing {

// Runs body in a forked child and _exit()s with its return value (exceptions: 99).
pid_t ForkChild(const std::function<int()>& body);

// waitpid; returns a readable description ("exit 0", "signal 9").
std::string WaitChild(pid_t pid);

// A one-shot signal between processes over a pipe.
class PipeSignal {
 public:
  PipeSignal();
  ~PipeSignal();
  void Notify();  // writes one byte
  bool Wait();    // blocks for one byte; false on EOF/error

 private:
  int fds_[2] = {-1, -1};
};

}  // namespace parallax::cache::testing
