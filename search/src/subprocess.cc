#include "parallax/search/subprocess.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <thread>

#include "absl/strings/str_cat.h"

namespace parallax::search {
namespace {

constexpr size_t kStderrTail = 4096;

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void CloseFd(int& fd) {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Subprocess>> Subprocess::Spawn(const std::vector<std::string>& argv) {
  if (argv.empty()) return absl::InvalidArgumentError("no program to run");
  ::signal(SIGPIPE, SIG_IGN);
  int in[2], out[2], err[2], exec_err[2];
  if (::pipe2(in, O_CLOEXEC) || ::pipe2(out, O_CLOEXEC) || ::pipe2(err, O_CLOEXEC) ||
      ::pipe2(exec_err, O_CLOEXEC))
    return absl::InternalError(absl::StrCat("pipe: ", strerror(errno)));
  // Everything the child touches is prepared before fork: other threads (the compile pool)
  // may hold locks, so the child only makes async-signal-safe calls.
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) return absl::InternalError(absl::StrCat("fork: ", strerror(errno)));
  if (pid == 0) {
    ::setpgid(0, 0);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(126);  // the parent died before prctl took effect
    ::signal(SIGPIPE, SIG_DFL);
    // Stop signals are for the tuner, which then ends the child itself: a job killer that
    // signals the whole process tree (Slurm's scancel, systemd's stop) must not kill the
    // worker under a measurement, which would be recorded as a crash of that variant and
    // never measured again on resume. Ignored dispositions survive exec; SIGKILL and the
    // parent-death signal still end the child.
    ::signal(SIGINT, SIG_IGN);
    ::signal(SIGTERM, SIG_IGN);
    ::signal(SIGHUP, SIG_IGN);
    ::dup2(in[0], 0);
    ::dup2(out[1], 1);
    ::dup2(err[1], 2);
    ::execv(args[0], args.data());
    const int e = errno;
    (void)!::write(exec_err[1], &e, sizeof(e));
    ::_exit(127);
  }
  ::close(in[0]);
  ::close(out[1]);
  ::close(err[1]);
  ::close(exec_err[1]);
  std::unique_ptr<Subprocess> p(new Subprocess());
  p->pid_ = pid;
  p->in_fd_ = in[1];
  p->out_fd_ = out[0];
  p->err_fd_ = err[0];
  int child_errno = 0;
  ssize_t n;
  do {
    n = ::read(exec_err[0], &child_errno, sizeof(child_errno));
  } while (n < 0 && errno == EINTR);
  ::close(exec_err[0]);
  if (n == sizeof(child_errno)) {  // exec failed; the pipe closed on exec otherwise
    p->Kill();
    return absl::FailedPreconditionError(absl::StrCat("cannot run ", argv[0], ": ", strerror(child_errno)));
  }
  ::fcntl(p->err_fd_, F_SETFL, ::fcntl(p->err_fd_, F_GETFL) | O_NONBLOCK);
  return p;
}

Subprocess::~Subprocess() { Kill(); }

absl::Status Subprocess::WriteLine(const std::string& line) {
  if (in_fd_ < 0) return absl::FailedPreconditionError("the worker's stdin is closed");
  const std::string data = line + "\n";
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(in_fd_, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return absl::UnavailableError(absl::StrCat("writing to the worker: ", strerror(errno)));
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

void Subprocess::DrainStderr() {
  if (err_fd_ < 0) return;
  char buf[4096];
  while (true) {
    const ssize_t n = ::read(err_fd_, buf, sizeof(buf));
    if (n > 0) {
      stderr_tail_.append(buf, static_cast<size_t>(n));
      if (stderr_tail_.size() > kStderrTail) stderr_tail_.erase(0, stderr_tail_.size() - kStderrTail);
      continue;
    }
    if (n == 0) CloseFd(err_fd_);
    return;  // EAGAIN or EOF
  }
}

Subprocess::Read Subprocess::ReadLine(double timeout_s, std::string* line, const std::atomic<bool>* cancel) {
  const double deadline = Now() + timeout_s;
  while (true) {
    if (const size_t nl = out_buf_.find('\n'); nl != std::string::npos) {
      *line = out_buf_.substr(0, nl);
      out_buf_.erase(0, nl + 1);
      return Read::kLine;
    }
    if (out_fd_ < 0) return Read::kEof;
    if (cancel != nullptr && cancel->load()) return Read::kCancelled;
    const double left = deadline - Now();
    if (left <= 0) return Read::kTimeout;
    pollfd fds[2] = {{out_fd_, POLLIN, 0}, {err_fd_, POLLIN, 0}};
    const int wait_ms = static_cast<int>(std::min(left, 0.1) * 1000) + 1;
    const int r = ::poll(fds, err_fd_ >= 0 ? 2 : 1, wait_ms);
    if (r < 0 && errno != EINTR) return Read::kEof;
    if (err_fd_ >= 0 && (fds[1].revents & (POLLIN | POLLHUP))) DrainStderr();
    if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      char buf[65536];
      const ssize_t n = ::read(out_fd_, buf, sizeof(buf));
      if (n > 0) {
        out_buf_.append(buf, static_cast<size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        DrainStderr();
        CloseFd(out_fd_);
      }
    }
  }
}

void Subprocess::Kill() {
  if (pid_ > 0 && !reaped_) {
    ::kill(pid_, SIGKILL);
    while (::waitpid(pid_, &wait_status_, 0) < 0 && errno == EINTR) {
    }
    reaped_ = true;
  }
  DrainStderr();
  CloseFd(in_fd_);
  CloseFd(out_fd_);
  CloseFd(err_fd_);
}

bool Subprocess::Reap(double wait_s) {
  if (reaped_ || pid_ <= 0) return true;
  const double deadline = Now() + wait_s;
  while (true) {
    const pid_t r = ::waitpid(pid_, &wait_status_, WNOHANG);
    if (r == pid_) {
      reaped_ = true;
      return true;
    }
    if (r < 0 && errno != EINTR) return false;
    if (Now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

std::string Subprocess::ExitDescription() const {
  if (!reaped_) return "still running";
  if (WIFEXITED(wait_status_)) return absl::StrCat("exited with status ", WEXITSTATUS(wait_status_));
  if (WIFSIGNALED(wait_status_)) {
    const int sig = WTERMSIG(wait_status_);
    return absl::StrCat("killed by signal ", sig, " (", strsignal(sig), ")");
  }
  return "ended";
}

}  // namespace parallax::search
