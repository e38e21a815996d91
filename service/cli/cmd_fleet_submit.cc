// `parallax fleet submit`: checks the options, plans the shards, writes the scripts and the
// manifest and submits them (or, with --dry-run / --script-only, prints / writes only). A fleet
// submitted again resumes: complete shards are left out of the array.
#include <filesystem>
#include <iostream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "cmd_fleet.h"
#include "parallax/search/shard.h"

namespace parallax::cli::fleet {

namespace fs = std::filesystem;

int RunSubmit(FleetOptions o) {
  if (o.dir.empty()) return Usage("fleet submit needs --dir DIR: the fleet's directory on a filesystem every node sees");
  if (o.shards < 1 || o.shards > search::kMaxShards)
    return Usage(absl::StrCat("fleet submit needs --shards N with 1 <= N <= ", search::kMaxShards));
  if (o.dry_run && o.script_only) return Usage("--dry-run and --script-only do not go together");
  if (o.no_merge && (!o.db.empty() || !o.server.empty()))
    return Usage("--no-merge leaves the shard databases as they are: drop --db / --server");
  if (!o.no_merge && o.db.empty() && o.server.empty())
    return Usage("fleet submit needs --db PATH (the target database the merge job imports the shards into), "
                 "--server HOST:PORT (a `parallax serve` to import them into), or --no-merge");
  if (o.server.empty() && (!o.token_file.empty() || !o.tls_ca.empty()))
    return Usage("--token-file and --tls-ca go with --server");
  if (o.gpus < 0) return Usage("--gpus must be 0 or more");
  if (absl::Status s = CheckTuneArgs(o.tune_args); !s.ok()) return Usage(std::string(s.message()));
  for (const std::string& a : o.sbatch_args)
    if (!absl::StartsWith(a, "-") || absl::StartsWith(a, "--array") || absl::StartsWith(a, "--dependency") ||
        absl::StartsWith(a, "--output") || absl::StartsWith(a, "--job-name") || absl::StartsWith(a, "--gres"))
      return Usage(absl::StrCat("--sbatch-arg ", a, ": give sbatch options in their --name=value form; --array, "
                                "--dependency, --output, --job-name and --gres are fleet submit's own "
                                "(--shards, --max-running, --job-name, --gpus)"));
  o.dir = Absolute(o.dir);
  o.db = Absolute(o.db);
  o.token_file = Absolute(o.token_file);
  o.tls_ca = Absolute(o.tls_ca);
  o.parallax = Absolute(o.parallax.empty() ? SelfPath() : o.parallax);
  while (o.dir.size() > 1 && o.dir.back() == '/') o.dir.pop_back();

  absl::StatusOr<FleetPlan> plan = PlanFleet(o.tune_args, o.shards);
  if (!plan.ok()) return Usage(std::string(plan.status().message()));

  absl::StatusOr<std::optional<Manifest>> old = LoadManifest(o.dir);
  if (!old.ok()) return Usage(std::string(old.status().message()));
  nlohmann::json manifest;
  std::vector<int> tasks, complete;
  if (old->has_value()) {
    const Manifest& m = **old;
    bool same_plan = true;
    for (const ShardPlanEntry& e : plan->shards) same_plan = same_plan && m.planned(e.index) == e.buckets;
    if (m.shards() != o.shards || m.j["tune_args"] != nlohmann::json(o.tune_args) || m.problem() != plan->problem)
      return Usage(absl::StrCat(o.dir, " holds another fleet (", m.shards(), " shard(s) of tune ",
                                m.j["tune_args"].dump(), "); a fleet resumes only with the same --shards and tune "
                                "options: give this one another --dir"));
    if (!same_plan)
      return Usage(absl::StrCat(o.dir, ": this parallax cuts the same tune into other shards than the one that "
                                "submitted the fleet (another version?); finish it with that one, or use another --dir"));
    manifest = m.j;
    const std::vector<ShardState> shards = ReadShards(o.dir, m);
    for (const ShardState& s : shards) {
      if (!s.error.empty()) return Fail(kExitFailure, absl::StrCat(s.db, ": ", s.error));
      (s.complete() && !o.all ? complete : tasks).push_back(s.index);
    }
    // Two tunes must not write one shard database: refuse while the last submission is queued.
    if (!o.dry_run && !o.script_only && !o.force) {
      const nlohmann::json* last = m.last_submission();
      const SlurmQuery q = QuerySlurm(SubmissionJobIds(last));
      std::vector<std::string> live;
      for (const auto& [id, st] : q.jobs)
        if (st.first == "PENDING" || st.first == "RUNNING" || st.first == "CONFIGURING" ||
            st.first == "COMPLETING" || st.first == "SUSPENDED" || st.first == "REQUEUED")
          live.push_back(absl::StrCat(id, " ", st.first));
      if (!live.empty())
        return Usage(absl::StrCat("this fleet's last submission is still in the queue (", absl::StrJoin(live, ", "),
                                  "): wait for it, scancel it, or pass --force"));
    }
  } else {
    manifest = {{"version", kManifestVersion},
                {"created", NowIso()},
                {"problem", plan->problem},
                {"shards", o.shards},
                {"units_total", plan->units_total},
                {"expected_total_s", plan->expected_total_s},
                {"tune_args", o.tune_args},
                {"plan", PlanJson(*plan)},
                {"submissions", nlohmann::json::array()}};
    for (int i = 1; i <= o.shards; ++i) tasks.push_back(i);
  }
  manifest["target_db"] = o.db.empty() ? nlohmann::json() : nlohmann::json(o.db);
  manifest["server"] = o.server.empty() ? nlohmann::json() : nlohmann::json(o.server);
  manifest["parallax"] = o.parallax;

  const std::string when = NowIso();
  const Scripts scripts = MakeScripts(o, *plan, when);
  const std::string tune_path = absl::StrCat(o.dir, "/", kTuneScriptName);
  const std::string merge_path = absl::StrCat(o.dir, "/", kMergeScriptName);
  const std::string array = ArraySpec(tasks, o.max_running);
  std::vector<std::string> commands;
  if (!tasks.empty())
    commands.push_back(absl::StrCat("array=$(sbatch --parsable", tasks.size() == size_t(o.shards) ? "" : absl::StrCat(" --array=", array),
                                    " ", ShellQuote(tune_path), ")"));
  if (!o.no_merge)
    commands.push_back(absl::StrCat("sbatch --parsable",
                                    tasks.empty() ? "" : " --dependency=afterok:${array%;*} --kill-on-invalid-dep=yes",
                                    " ", ShellQuote(merge_path)));

  // What both the dry run's and the submission's JSON report (nlohmann::json keeps keys sorted,
  // so the added fields land where they did).
  auto summary = [&] {
    return nlohmann::json(
        {{"dir", o.dir}, {"problem", plan->problem}, {"shards", o.shards}, {"tasks", tasks}, {"complete", complete}});
  };
  if (o.dry_run) {
    if (o.json) {
      nlohmann::json j = summary();
      j["plan"] = PlanJson(*plan);
      j["tune_script"] = scripts.tune;
      j["merge_script"] = o.no_merge ? nlohmann::json() : nlohmann::json(scripts.merge);
      j["commands"] = commands;
      std::cout << j.dump(2) << "\n";
      return kExitOk;
    }
    std::cout << "# ---- " << tune_path << " (not written: --dry-run) ----\n" << scripts.tune;
    if (!o.no_merge) std::cout << "# ---- " << merge_path << " (not written: --dry-run) ----\n" << scripts.merge;
    std::cout << "# ---- would submit ----\n";
    if (!complete.empty())
      std::cout << "# complete, left out: shard(s) " << absl::StrJoin(complete, ",") << " of " << o.shards << "\n";
    for (const std::string& c : commands) std::cout << c << "\n";
    return kExitOk;
  }

  std::error_code ec;
  fs::create_directories(absl::StrCat(o.dir, "/logs"), ec);
  if (ec) return Fail(kExitFailure, absl::StrCat(o.dir, "/logs: cannot create (", ec.message(), ")"));
  if (absl::Status s = WriteFileAtomically(tune_path, scripts.tune); !s.ok()) return Fail(kExitFailure, s.message());
  if (!o.no_merge)
    if (absl::Status s = WriteFileAtomically(merge_path, scripts.merge); !s.ok()) return Fail(kExitFailure, s.message());
  const std::string manifest_path = absl::StrCat(o.dir, "/", kManifestName);

  if (o.script_only) {
    if (absl::Status s = WriteFileAtomically(manifest_path, manifest.dump(2) + "\n"); !s.ok())
      return Fail(kExitFailure, s.message());
    if (o.json) {
      std::cout << nlohmann::json({{"dir", o.dir}, {"tune_script", tune_path},
                                   {"merge_script", o.no_merge ? nlohmann::json() : nlohmann::json(merge_path)},
                                   {"tasks", tasks}, {"complete", complete}, {"commands", commands}})
                       .dump(2)
                << "\n";
    } else {
      std::cout << "# wrote " << tune_path << (o.no_merge ? "" : absl::StrCat(" and ", merge_path))
                << "; submit them with:\n";
      for (const std::string& c : commands) std::cout << c << "\n";
    }
    return kExitOk;
  }

  nlohmann::json submission = {{"at", when}, {"tasks", tasks}, {"complete", complete}};
  std::string array_job;
  if (!tasks.empty()) {
    std::vector<std::string> argv = {"sbatch", "--parsable"};
    if (tasks.size() != size_t(o.shards)) argv.push_back(absl::StrCat("--array=", array));
    argv.push_back(tune_path);
    absl::StatusOr<std::string> id = JobIdOf(RunCommand(argv), "shard array");
    if (!id.ok()) return Fail(kExitFailure, id.status().message());
    array_job = *id;
    submission["array_job"] = array_job;
  }
  std::string merge_job;
  std::string merge_error;
  if (!o.no_merge) {
    std::vector<std::string> argv = {"sbatch", "--parsable"};
    if (!array_job.empty()) {
      argv.push_back(absl::StrCat("--dependency=afterok:", array_job));
      argv.push_back("--kill-on-invalid-dep=yes");  // a failed shard cancels the merge
    }
    argv.push_back(merge_path);
    absl::StatusOr<std::string> id = JobIdOf(RunCommand(argv), "merge job");
    if (id.ok()) {
      merge_job = *id;
      submission["merge_job"] = merge_job;
    } else {
      merge_error = std::string(id.status().message());
    }
  }
  manifest["submissions"].push_back(submission);
  if (absl::Status s = WriteFileAtomically(manifest_path, manifest.dump(2) + "\n"); !s.ok())
    return Fail(kExitFailure, absl::StrCat(s.message(), " (submitted: array job ", array_job.empty() ? "-" : array_job,
                                           ", merge job ", merge_job.empty() ? "-" : merge_job, ")"));
  if (o.json) {
    nlohmann::json j = summary();
    j["array_job"] = array_job.empty() ? nlohmann::json() : nlohmann::json(array_job);
    j["merge_job"] = merge_job.empty() ? nlohmann::json() : nlohmann::json(merge_job);
    j["tune_script"] = tune_path;
    j["merge_script"] = o.no_merge ? nlohmann::json() : nlohmann::json(merge_path);
    std::cout << j.dump(2) << "\n";
  } else {
    if (!array_job.empty())
      std::cout << absl::StrFormat("# submitted job array %s: shard(s) %s of %d (%s, %s)\n", array_job,
                                   ArraySpec(tasks, 0), o.shards, plan->problem, tune_path);
    if (!complete.empty())
      std::cout << absl::StrFormat("# complete, left out: shard(s) %s\n", ArraySpec(complete, 0));
    if (!merge_job.empty())
      std::cout << absl::StrFormat("# submitted merge job %s%s into %s\n", merge_job,
                                   array_job.empty() ? "" : absl::StrCat(" (after ", array_job, " ends OK)"),
                                   !o.db.empty() ? o.db : o.server);
    std::cout << "# progress: parallax fleet status --dir " << ShellQuote(o.dir) << "\n";
  }
  if (!merge_error.empty())
    return Fail(kExitFailure, absl::StrCat(merge_error, "; the shards are submitted (job ", array_job,
                                           "): submit the merge by hand: sbatch --dependency=afterok:", array_job,
                                           " ", merge_path));
  return kExitOk;
}

}  // namespace parallax::cli::fleet
