#include "child_process.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <exception>

#include "absl/strings/str_cat.h"

namespace parallax::cache::testing {

pid_t ForkChild(const std::function<int()>& body) {
  std::fflush(nullptr);  // so buffered output is not written twice
  pid_t pid = fork();
  if (pid != 0) return pid;
  int code = 99;
  try {
    code = body();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "child: exception: %s\n", e.what());
  }
  std::fflush(nullptr);
  // _exit: no atexit handlers or static destructors from the parent's gtest state.
  _exit(code);
}

std::string WaitChild(pid_t pid) {
  int status = 0;
  if (waitpid(pid, &status, 0) != pid) return "waitpid failed";
  if (WIFEXITED(status)) return absl::StrCat("exit ", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return absl::StrCat("signal ", WTERMSIG(status));
  return "unknown";
}

PipeSignal::PipeSignal() {
  if (pipe(fds_) != 0) fds_[0] = fds_[1] = -1;
}

PipeSignal::~PipeSignal() {
  for (int fd : fds_) {
    if (fd >= 0) close(fd);
  }
}

void PipeSignal::Notify() {
  char byte = 1;
  [[maybe_unused]] ssize_t n = write(fds_[1], &byte, 1);
}

bool PipeSignal::Wait() {
  char byte = 0;
  return read(fds_[0], &byte, 1) == 1;
}

}  // namespace parallax::cache::testing
