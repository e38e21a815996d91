// `parallax fleet submit|status`: one tune's buckets spread over a Slurm cluster.
//
// submit writes two batch scripts into the fleet directory (a shared filesystem) and submits
// them: a job array with one task per shard (`parallax tune --shard I/N --db DIR/shard-I.db`
// plus the tune options after `--`, `--gres=gpu:G` per task) and a job that runs once every
// task ended OK (`--dependency=afterok`) and merges the shard databases into the target with
// `parallax db import` (and/or uploads them to a running `parallax serve`). Submitting the same
// fleet again resumes it: complete shards are left out of the array, the others continue from
// their databases. --dry-run prints the scripts, --script-only writes them, neither submits.
//
// status reads the shard databases (read-only: never created, migrated or written) and the
// fleet's manifest (DIR/fleet.json) and prints each shard's buckets done / planned from its
// run records, plus the Slurm state of its task when squeue answers.
//
// The shards' plan comes from the tune command itself (`tune --dry-run --json --shard I/N`,
// run in this process), so submit, the tasks and status cannot disagree on which buckets a
// shard has. Slurm is reached only through its commands (sbatch, squeue), found on PATH.
//
// The parts: cmd_fleet.h lists the files that hold them.
#include <memory>

#include "cmd_fleet.h"
#include "registry.h"

namespace parallax::cli {
namespace {

using fleet::FleetOptions;
using fleet::RunStatus;
using fleet::RunSubmit;
using fleet::Usage;

Action SetupFleet(CLI::App& cmd) {
  auto o = std::make_shared<FleetOptions>();
  cmd.require_subcommand(1);
  cmd.footer(
      "A fleet is one tune's buckets in N shards, one Slurm array task each, in a directory every node\n"
      "sees; a dependent job merges the shard databases. See docs/fleet.md, \"Production setup on Slurm\".");

  CLI::App* submit = cmd.add_subcommand(
      "submit", "Write the batch scripts of a fleet and submit them: a job array (one task per shard) and a merge job");
  submit->add_option("--shards", o->shards, "Number of shards N (one array task each)")->required();
  submit->add_option("--dir", o->dir,
                     "Fleet directory on a filesystem the compute nodes share: scripts, fleet.json, "
                     "shard-I.db, logs/ (created)")
      ->required()->type_name("DIR");
  submit->add_option("--db", o->db, "Target database the merge job imports the shard databases into")->type_name("PATH");
  submit->add_option("--server", o->server,
                     "Also (or, without --db, instead) `parallax remote import` each shard database into the "
                     "`parallax serve` at HOST:PORT")
      ->type_name("HOST:PORT");
  submit->add_option("--token-file", o->token_file, "With --server: bearer token file for `parallax remote`")
      ->type_name("PATH");
  submit->add_option("--tls-ca", o->tls_ca, "With --server: PEM roots of the server's TLS certificate")
      ->type_name("PATH");
  submit->add_flag("--no-merge", o->no_merge, "Submit no merge job (merge the shard databases yourself)");
  submit->add_option("--gpus", o->gpus, "GPUs per task (--gres=gpu:G; 0: no gres line)")->capture_default_str();
  submit->add_option("--cpus-per-task", o->cpus_per_task, "CPUs per task (NVRTC compiles on them; 0: Slurm's default)")
      ->check(CLI::NonNegativeNumber);
  submit->add_option("--max-running", o->max_running, "At most this many shard tasks at once (--array=...%K; 0: no limit)")
      ->check(CLI::NonNegativeNumber);
  submit->add_option("--partition", o->partition, "Slurm partition of both jobs");
  submit->add_option("--time", o->time_limit, "Time limit of each shard task, in Slurm's format (e.g. 2:00:00); "
                                              "a task stopped by it resumes when the fleet is submitted again");
  submit->add_option("--job-name", o->job_name, "Job name prefix (default: plx-<dir name>; -tune / -merge appended)");
  submit->add_option("--sbatch-arg", o->sbatch_args,
                     "Another sbatch option for both jobs, as --name=value (repeatable): e.g. --constraint=h100, "
                     "--account=ml")
      ->allow_extra_args(false);
  submit->add_option("--parallax", o->parallax, "The parallax executable the jobs run (default: this one)")
      ->type_name("PATH");
  submit->add_flag("--all", o->all, "Submit every shard, the complete ones too (they finish at once)");
  submit->add_flag("--force", o->force, "Submit even while this fleet's last submission is still queued or running");
  submit->add_flag("--dry-run", o->dry_run, "Print the batch scripts and the sbatch commands; write and submit nothing");
  submit->add_flag("--script-only", o->script_only,
                   "Write the batch scripts and fleet.json into --dir and print the sbatch commands; submit nothing");
  submit->add_flag("--json", o->json, "Print the result as JSON");
  submit->add_option("tune-options", o->tune_args,
                     "After `--`: the options of `parallax tune` (see parallax tune --help), e.g. "
                     "-- --preset qwen3-0.6b --budget 2h")
      ->type_name("-- TUNE-OPTIONS");
  submit->footer(
      "Example:\n"
      "  parallax fleet submit --shards 8 --dir /shared/plx/h100-qwen3 --db /shared/plx/h100.db \\\n"
      "      --gpus 1 --partition gpu --sbatch-arg=--constraint=h100 -- --preset qwen3-0.6b --budget 2h\n"
      "Submitting the same command again resumes the fleet (complete shards are left out).");

  CLI::App* status = cmd.add_subcommand(
      "status", "Progress of a fleet: each shard's buckets done / planned (from its database) and Slurm state");
  status->add_option("--dir", o->dir, "The fleet directory given to fleet submit")->required()->type_name("DIR");
  status->add_flag("--json", o->json, "Print JSON instead of a table");

  return [o, submit, status] {
    if (submit->parsed()) return RunSubmit(*o);
    if (status->parsed()) return RunStatus(*o);
    return Usage("fleet needs a subcommand: submit or status (see parallax fleet --help)");
  };
}

}  // namespace

PLX_REGISTER_COMMAND(fleet, 58, "Tune across a Slurm cluster: submit a sharded tune as a job array, follow it",
                     SetupFleet);

}  // namespace parallax::cli
