#include "temp_files.h"

#include <atomic>
#include <cerrno>
#include <csignal>
#include <filesystem>
#include <system_error>

#include <spdlog/spdlog.h>
#include <unistd.h>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace parallax::service {
namespace {

constexpr char kPrefix[] = ".parallax-";

// The writer's pid from a name of TempPath's pattern; 0 when the name is not one.
pid_t WriterPid(absl::string_view name) {
  if (!absl::ConsumePrefix(&name, kPrefix)) return 0;
  if (!absl::ConsumePrefix(&name, "import-") && !absl::ConsumePrefix(&name, "export-")) return 0;
  for (absl::string_view companion : {"-journal", "-wal", "-shm"})
    if (absl::ConsumeSuffix(&name, companion)) break;
  if (!absl::ConsumeSuffix(&name, ".db")) return 0;
  const size_t dash = name.find('-');
  if (dash == absl::string_view::npos) return 0;
  int64_t pid = 0;
  uint64_t counter = 0;
  if (!absl::SimpleAtoi(name.substr(0, dash), &pid) || !absl::SimpleAtoi(name.substr(dash + 1), &counter)) return 0;
  return pid > 0 && pid <= 0x3fffffff ? static_cast<pid_t>(pid) : 0;
}

bool Alive(pid_t pid) { return kill(pid, 0) == 0 || errno == EPERM; }

}  // namespace

std::string TempPath(const std::string& dir, absl::string_view what) {
  static std::atomic<uint64_t> counter{0};
  return (std::filesystem::path(dir) / absl::StrCat(kPrefix, what, "-", getpid(), "-", counter++, ".db")).string();
}

int RemoveStaleTempFiles(const std::string& dir) {
  int removed = 0;
  std::error_code ec;
  for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    const pid_t pid = WriterPid(name);
    if (pid == 0 || pid == getpid() || Alive(pid)) continue;
    std::error_code rm;
    if (it->is_regular_file(rm) && std::filesystem::remove(it->path(), rm)) {
      ++removed;
    } else if (rm) {
      spdlog::warn("cannot remove the stale transfer file {}: {}", it->path().string(), rm.message());
    }
  }
  return removed;
}

}  // namespace parallax::service
