// Slurm, reached only through its commands on PATH: squeue for the states of a submission's
// jobs, sbatch's job ids, and the --array specs the fleet hands it.
#include <algorithm>
#include <map>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "cmd_fleet.h"

namespace parallax::cli::fleet {

SlurmQuery QuerySlurm(const std::vector<std::string>& job_ids) {
  SlurmQuery q;
  if (job_ids.empty()) {
    q.note = "nothing submitted";
    return q;
  }
  const CommandResult r =
      RunCommand({"squeue", "--noheader", "--array", "--states=all", "--format=%i|%T|%r",
                  absl::StrCat("--jobs=", absl::StrJoin(job_ids, ","))});
  if (r.exit_code == 127) {
    q.note = "squeue not found: Slurm states not shown";
    return q;
  }
  if (r.exit_code != 0) {
    // Jobs long gone make squeue complain "Invalid job id specified": nothing in the queue.
    if (absl::StrContains(r.err, "Invalid job id")) {
      q.available = true;
      return q;
    }
    q.note = absl::StrCat("squeue failed: ", FirstLine(r.err.empty() ? r.out : r.err));
    return q;
  }
  q.available = true;
  for (absl::string_view line : absl::StrSplit(r.out, '\n', absl::SkipWhitespace())) {
    std::vector<std::string> f = absl::StrSplit(line, '|');
    if (f.size() >= 3) q.jobs[f[0]] = {f[1], f[2]};
  }
  return q;
}

std::vector<std::string> SubmissionJobIds(const nlohmann::json* sub) {
  std::vector<std::string> ids;
  if (sub == nullptr) return ids;
  for (const char* k : {"array_job", "merge_job"})
    if (sub->contains(k) && (*sub)[k].is_string() && !(*sub)[k].get<std::string>().empty())
      ids.push_back((*sub)[k].get<std::string>());
  return ids;
}

void ApplySlurm(const SlurmQuery& q, const nlohmann::json* sub, std::vector<ShardState>& shards) {
  if (sub == nullptr) return;
  const std::string array = sub->value("array_job", "");
  if (array.empty()) return;
  const std::vector<int> tasks = sub->value("tasks", std::vector<int>{});
  for (ShardState& s : shards) {
    s.slurm_checked = q.available && std::find(tasks.begin(), tasks.end(), s.index) != tasks.end();
    const std::string id = absl::StrCat(array, "_", s.index);
    if (auto it = q.jobs.find(id); it != q.jobs.end()) {
      s.slurm_job = id;
      s.slurm_state = it->second.first;
      s.slurm_reason = it->second.second;
    }
  }
}

std::string ArraySpec(const std::vector<int>& tasks, int max_running) {
  // Runs of consecutive indices as "a-b".
  std::vector<std::string> parts;
  for (size_t i = 0; i < tasks.size();) {
    size_t j = i;
    while (j + 1 < tasks.size() && tasks[j + 1] == tasks[j] + 1) ++j;
    parts.push_back(i == j ? absl::StrCat(tasks[i]) : absl::StrCat(tasks[i], "-", tasks[j]));
    i = j + 1;
  }
  return absl::StrCat(absl::StrJoin(parts, ","), max_running > 0 ? absl::StrCat("%", max_running) : "");
}

absl::StatusOr<std::string> JobIdOf(const CommandResult& r, const std::string& what) {
  if (r.exit_code == 127) return absl::FailedPreconditionError("sbatch not found on PATH: is Slurm's client installed "
                                                               "here? (--dry-run / --script-only need no Slurm)");
  if (r.exit_code != 0)
    return absl::UnavailableError(absl::StrCat("sbatch refused the ", what, ": ", FirstLine(r.err.empty() ? r.out : r.err)));
  const std::string id = FirstLine(r.out).substr(0, FirstLine(r.out).find(';'));
  int64_t n;
  if (!absl::SimpleAtoi(id, &n)) return absl::UnavailableError(absl::StrCat("sbatch printed no job id: ", FirstLine(r.out)));
  return id;
}

}  // namespace parallax::cli::fleet
