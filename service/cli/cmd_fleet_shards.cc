// Each shard's progress, from the run records of its database: read from a private copy,
// never opened in place (it may be open in a tune on another host).
#include <stdlib.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>

#include "absl/strings/str_cat.h"
#include "cmd_fleet.h"
#include "parallax/cache/rows.h"
#include "parallax/cache/store.h"
#include "parallax/search/shard.h"

namespace parallax::cli::fleet {

namespace fs = std::filesystem;

namespace {

// A private copy of a shard database and its write-ahead log, to read: the file may be open
// in a tune on another host, and SQLite's WAL index (the -shm file) must never be shared
// between hosts, so the shard's own files are only ever read with plain reads, never locked or
// mapped. The log is copied first: a checkpoint between the two copies then only leaves pages
// in the database that the copied log holds too. A copy taken while the tune writes may miss
// its last transaction (a torn log tail is ignored), which is fine for a progress report.
class Snapshot {
 public:
  ~Snapshot() { Drop(); }
  absl::StatusOr<std::string> Take(const std::string& db) {
    Drop();
    std::error_code ec;
    const fs::path tmp = fs::temp_directory_path(ec);
    std::string tmpl = ((ec ? fs::path("/tmp") : tmp) / "parallax-fleet-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr)
      return absl::UnavailableError(absl::StrCat("cannot make a temporary directory: ", std::strerror(errno)));
    dir_ = tmpl;
    const std::string copy = absl::StrCat(dir_, "/shard.db");
    if (fs::exists(db + "-wal", ec)) fs::copy_file(db + "-wal", copy + "-wal", ec);  // gone meanwhile: fine
    ec.clear();
    fs::copy_file(db, copy, ec);
    if (ec) return absl::UnavailableError(absl::StrCat(db, ": cannot read (", ec.message(), ")"));
    return copy;
  }

 private:
  void Drop() {
    std::error_code ec;
    if (!dir_.empty()) fs::remove_all(dir_, ec);
    dir_.clear();
  }
  std::string dir_;
};

// Which buckets a shard's runs finished. A run writes a bucket into its progress record when
// the bucket's unit ends, so every bucket in a done, failed or still-open run (one killed
// outright never closes its record) is finished. A run stopped by a signal (cancelled,
// interrupted) also records the unit it was cut off in: the bucket it measured last, which
// does not count (nor a bucket it recorded without a best config).
void ReadShard(const std::string& fleet_problem, const search::ShardSpec& spec, ShardState& s) {
  std::error_code ec;
  s.exists = fs::exists(s.db, ec);
  if (!s.exists) return;
  Snapshot snap;
  absl::StatusOr<std::vector<cache::RunInfo>> runs;
  absl::StatusOr<std::vector<cache::Measurement>> ms;
  absl::StatusOr<std::vector<cache::BestConfig>> best;
  absl::Status read;
  // A copy torn by a checkpoint under way fails the integrity check on open: take another.
  for (int attempt = 0; attempt < 3; ++attempt) {
    if (attempt > 0) ::usleep(200 * 1000);
    absl::StatusOr<std::string> copy = snap.Take(s.db);
    if (!copy.ok()) {
      read = copy.status();
      continue;
    }
    cache::StoreOptions so;
    so.read_only = true;  // never created, migrated or written (and only a copy, at that)
    absl::StatusOr<std::unique_ptr<cache::Store>> st = cache::Store::Open(*copy, so);
    if (!st.ok()) {
      read = st.status();
      continue;
    }
    runs = (*st)->ListRuns();
    ms = (*st)->ListMeasurements();
    best = (*st)->ListBestConfigs();
    read = !runs.ok() ? runs.status() : !ms.ok() ? ms.status() : best.status();
    if (read.ok()) break;
  }
  if (!read.ok()) {
    s.error = absl::StrCat(s.db, ": ", read.message());
    return;
  }
  s.measurements = static_cast<int64_t>(ms->size());
  s.best_configs = static_cast<int64_t>(best->size());
  std::map<int64_t, std::string> last_bucket;  // run id -> bucket of its last measurement
  for (const cache::Measurement& m : *ms)
    if (m.run_id) last_bucket[*m.run_id] = m.bucket;
  const std::set<std::string> planned(s.planned.begin(), s.planned.end());
  const std::string shard = search::ToString(spec);
  const cache::RunInfo* newest = nullptr;
  for (const cache::RunInfo& r : *runs) {
    if (!r.params.is_object() || r.params.value("shard", "") != shard ||
        (!fleet_problem.empty() && r.params.value("problem_key", "") != fleet_problem))
      continue;
    ++s.runs;
    if (newest == nullptr || r.started_at > newest->started_at ||
        (r.started_at == newest->started_at && r.id > newest->id))
      newest = &r;
    const bool stopped = r.status == cache::RunStatus::kCancelled || r.status == cache::RunStatus::kInterrupted;
    const nlohmann::json buckets = r.progress.is_object() ? r.progress.value("buckets", nlohmann::json::object())
                                                          : nlohmann::json::object();
    if (!buckets.is_object()) continue;
    for (const auto& [bucket, u] : buckets.items()) {
      if (!planned.count(bucket) || !u.is_object()) continue;
      const bool has_best = u.value("best", "") != "";
      if (stopped) {
        auto cut = last_bucket.find(r.id);
        if (!has_best || (cut != last_bucket.end() && cut->second == bucket)) continue;
      }
      if (has_best && u.value("error", "").empty()) {
        s.done.insert(bucket);
        s.failed.erase(bucket);
      } else if (!s.done.count(bucket)) {
        s.failed.insert(bucket);
      }
    }
  }
  if (newest != nullptr) {
    s.last_status = std::string(cache::ToString(newest->status));
    s.last_started_ms = newest->started_at;
    s.last_finished_ms = newest->finished_at.value_or(0);
    // The other GPUs of the same tune (one run per GPU, started together): open if any is.
    for (const cache::RunInfo& r : *runs)
      if (r.status == cache::RunStatus::kRunning && r.params.is_object() && r.params.value("shard", "") == shard &&
          r.started_at + 60000 >= newest->started_at)
        s.last_status = "running";
  }
}

}  // namespace

std::vector<ShardState> ReadShards(const std::string& dir, const Manifest& m) {
  std::vector<ShardState> out;
  const int n = m.shards();
  for (int i = 1; i <= n; ++i) {
    ShardState s;
    s.index = i;
    s.db = ShardDb(dir, i);
    s.planned = m.planned(i);
    ReadShard(m.problem(), search::ShardSpec{i, n}, s);
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace parallax::cli::fleet
