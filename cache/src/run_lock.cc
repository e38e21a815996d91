#include "parallax/cache/run_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

namespace parallax::cache {

RunLock::RunLock(const std::string& db_path, const std::function<void()>& if_alone) {
  fd_ = ::open((db_path + ".lock").c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
  if (fd_ < 0) return;  // read-only directory: we just never claim to be alone
  alone_ = ::flock(fd_, LOCK_EX | LOCK_NB) == 0;
  if (alone_ && if_alone) if_alone();
  ::flock(fd_, LOCK_SH);  // from exclusive: a downgrade; otherwise join the others
}

RunLock::~RunLock() {
  if (fd_ >= 0) ::close(fd_);  // releases the flock
}

}  // namespace parallax::cache
