// A child process with pipes on stdin, stdout and stderr, read with deadlines: the transport
// under the worker watchdog. POSIX (fork + exec); Linux-specific only in that the child dies
// with its parent (PR_SET_PDEATHSIG).
#pragma once

#include <sys/types.h>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace parallax::search {

class Subprocess {
 public:
  // Starts argv[0] (a path) with argv. The child gets its own process group, so a Ctrl-C
  // meant for the tuner does not kill the worker mid-measurement (the tuner stops it
  // itself), and is killed if the tuner dies. It starts with SIGINT, SIGTERM and SIGHUP
  // ignored, for killers that signal every process of a job (scancel, systemd). Writing to
  // a dead child must not kill the tuner, so this ignores SIGPIPE process-wide.
  static absl::StatusOr<std::unique_ptr<Subprocess>> Spawn(const std::vector<std::string>& argv);
  ~Subprocess();  // Kill()
  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;

  pid_t pid() const { return pid_; }

  // One line to the child's stdin ('\n' appended). Fails when the child is gone.
  absl::Status WriteLine(const std::string& line);

  enum class Read { kLine, kTimeout, kEof, kCancelled };
  // Waits up to timeout_s for one line of the child's stdout (without '\n'), draining
  // stderr meanwhile. kEof: the child closed stdout (it exited or crashed). kCancelled:
  // *cancel became true (polled every 100 ms).
  Read ReadLine(double timeout_s, std::string* line, const std::atomic<bool>* cancel = nullptr);

  // SIGKILL (if still running) and reap. Idempotent.
  void Kill();
  // Reaps if the child exited; waits up to wait_s for it to do so. True when reaped.
  bool Reap(double wait_s);
  // "exited with status 3", "killed by signal 11 (Segmentation fault)" or "still running".
  std::string ExitDescription() const;
  // The last few KiB the child wrote to stderr.
  const std::string& stderr_tail() const { return stderr_tail_; }

 private:
  Subprocess() = default;
  void DrainStderr();

  pid_t pid_ = -1;
  int in_fd_ = -1, out_fd_ = -1, err_fd_ = -1;
  bool reaped_ = false;
  int wait_status_ = 0;
  std::string out_buf_;
  std::string stderr_tail_;
};

}  // namespace parallax::search
