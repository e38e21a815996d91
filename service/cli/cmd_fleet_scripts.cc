// The fleet's two batch scripts: tune.sbatch, a job array with one task per shard, and
// merge.sbatch, which imports the shard databases once every task ended OK.
#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "cmd_fleet.h"

namespace parallax::cli::fleet {

namespace fs = std::filesystem;

namespace {

std::string JobName(const FleetOptions& o) {
  if (!o.job_name.empty()) return o.job_name;
  std::string base = fs::path(o.dir).filename().string();
  if (base.empty()) base = "fleet";
  return absl::StrCat("plx-", base);
}

// Tune options one per line: an option and the values that follow it.
std::string TuneArgLines(const std::vector<std::string>& args) {
  std::string out;
  for (size_t i = 0; i < args.size(); ++i) {
    const bool starts_option = absl::StartsWith(args[i], "-");
    if (i == 0 || starts_option) absl::StrAppend(&out, " \\\n  ");
    else absl::StrAppend(&out, " ");
    absl::StrAppend(&out, ShellQuote(args[i]));
  }
  return out;
}

}  // namespace

Scripts MakeScripts(const FleetOptions& o, const FleetPlan& plan, const std::string& when) {
  const int n = o.shards;
  const std::string name = JobName(o);
  const std::string common_head = absl::StrCat(
      "set -euo pipefail\n", "parallax=", ShellQuote(o.parallax), "\n", "fleet_dir=", ShellQuote(o.dir), "\n",
      "shards=", n, "\n");
  std::string sb;  // options both jobs share
  if (!o.partition.empty()) absl::StrAppend(&sb, "#SBATCH --partition=", o.partition, "\n");
  for (const std::string& a : o.sbatch_args) absl::StrAppend(&sb, "#SBATCH ", a, "\n");

  Scripts s;
  s.tune = absl::StrCat(
      "#!/bin/bash\n",
      "# Parallax fleet tune, written by `parallax fleet submit` on ", when, ".\n",
      "#   problem ", plan.problem, ", ", plan.units_total, " bucket(s) in ", n, " shard(s)\n",
      "# One Slurm array task per shard: task I tunes shard I/", n, " into ", o.dir, "/shard-I.db.\n",
      "# Submitting the fleet again resumes it: a shard's database keeps every measurement, so a\n",
      "# task killed part way loses nothing, and complete shards are left out.\n",
      "# Progress: parallax fleet status --dir ", ShellQuote(o.dir), "\n",
      "#SBATCH --job-name=", name, "-tune\n",
      "#SBATCH --array=1-", n, o.max_running > 0 ? absl::StrCat("%", o.max_running) : "", "\n",
      "#SBATCH --ntasks=1\n",
      o.gpus > 0 ? absl::StrCat("#SBATCH --gres=gpu:", o.gpus, "\n") : "",
      o.cpus_per_task > 0 ? absl::StrCat("#SBATCH --cpus-per-task=", o.cpus_per_task, "\n") : "",
      o.time_limit.empty() ? "" : absl::StrCat("#SBATCH --time=", o.time_limit, "\n"),
      sb,
      "#SBATCH --output=", o.dir, "/logs/shard-%a.log\n",
      "#SBATCH --open-mode=append\n",
      common_head,
      "shard=${SLURM_ARRAY_TASK_ID:?submit this script with sbatch as a job array, one task per shard: 1-", n, "}\n",
      "echo \"parallax fleet: shard $shard/$shards on $(hostname), job ${SLURM_JOB_ID:-?}, GPUs "
      "${CUDA_VISIBLE_DEVICES:-none}, $(date -u +%FT%TZ)\"\n",
      "exec \"$parallax\" tune --shard \"$shard/$shards\" --db \"$fleet_dir/shard-$shard.db\"",
      TuneArgLines(o.tune_args), "\n");

  std::string merge_body;
  if (!o.db.empty())
    absl::StrAppend(&merge_body, "target=", ShellQuote(o.db), "\n");
  std::string remote;
  if (!o.server.empty()) {
    remote = absl::StrCat("\"$parallax\" remote --server ", ShellQuote(o.server));
    if (!o.token_file.empty()) absl::StrAppend(&remote, " --token-file ", ShellQuote(o.token_file));
    if (!o.tls_ca.empty()) absl::StrAppend(&remote, " --tls-ca ", ShellQuote(o.tls_ca));
  }
  absl::StrAppend(&merge_body, "for shard in $(seq 1 \"$shards\"); do\n",
                  "  echo \"parallax fleet: merging shard $shard/$shards ($(date -u +%FT%TZ))\"\n");
  if (!o.db.empty())
    absl::StrAppend(&merge_body, "  \"$parallax\" db import \"$fleet_dir/shard-$shard.db\" --db \"$target\"\n");
  if (!remote.empty()) absl::StrAppend(&merge_body, "  ", remote, " import \"$fleet_dir/shard-$shard.db\"\n");
  absl::StrAppend(&merge_body, "done\n");
  if (!o.db.empty()) absl::StrAppend(&merge_body, "\"$parallax\" db verify --db \"$target\"\n");
  absl::StrAppend(&merge_body, "date -u +%FT%TZ > \"$fleet_dir/", kMergedMarker, "\"\n");

  std::string into;
  if (!o.db.empty()) into = absl::StrCat("into ", o.db, " (`parallax db import`, then `db verify`)");
  if (!o.server.empty())
    absl::StrAppend(&into, into.empty() ? "" : "\n# and ", "into the `parallax serve` at ", o.server,
                    " (`parallax remote import`)");
  s.merge = absl::StrCat(
      "#!/bin/bash\n",
      "# Parallax fleet merge, written by `parallax fleet submit` on ", when, ".\n",
      "# Runs once every shard task ended OK (sbatch --dependency=afterok:<array job>) and merges\n",
      "# the ", n, " shard database(s) ", into, ".\n",
      "# Importing a shard again adds nothing twice, so this job may be rerun at will.\n",
      "#SBATCH --job-name=", name, "-merge\n",
      "#SBATCH --ntasks=1\n",
      sb,
      "#SBATCH --output=", o.dir, "/logs/merge.log\n",
      "#SBATCH --open-mode=append\n",
      common_head, merge_body);
  return s;
}

}  // namespace parallax::cli::fleet
