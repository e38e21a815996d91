// Where a tune's wall time went, per GPU worker and for the whole run: the numbers that
// say whether a run was bound by its GPUs, by compiles, by worker start-up and input
// preparation, by the database, or by one GPU finishing late (the tail). Cheap to keep (a
// few clock reads per measurement); `tune --json` prints it as "timing", the human summary
// as one line, and each GPU's run record keeps its worker's part.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "parallax/search/compile.h"

namespace parallax::search {

// One GPU's measuring thread and worker. Seconds of wall time, each interval counted once.
struct WorkerTiming {
  int device = 0;
  int units = 0, measurements = 0, starts = 0;
  double wall_s = 0;          // the thread's life: first unit to its worker's stop
  double measure_s = 0;       // in measure requests: the GPU timing a candidate, plus the round trip
  double compile_wait_s = 0;  // blocked on a candidate's compile (compiling it here included)
  double prepare_s = 0;       // bucket inputs, the float64 and full-shape references
  double start_s = 0;         // worker processes from spawn to "ready" (driver, context)
  double db_s = 0;            // this thread's database reads and writes
  double idle_end_s = 0;      // from its last unit to the end of the run: the tail
  // The rest of wall_s: strategies, progress, bookkeeping (never below 0).
  double other_s() const;
};

struct TuneTiming {
  double wall_s = 0;   // set-up and run
  double setup_s = 0;  // database, spaces, warm-start picks: before any GPU works
  std::string order;   // how units were handed out ("longest-first")
  std::vector<WorkerTiming> workers;
  CompileQueue::Stats compile;  // all GPU models' compile queues together
  double db_s = 0;     // every database call of the run, set-up included
};

nlohmann::json ToJson(const WorkerTiming& w);
nlohmann::json ToJson(const TuneTiming& t);

// One line for people: "timing: wall 42.1 s (set-up 0.3 s); gpu0 measure 35.2 s, ...".
std::string Summary(const TuneTiming& t);

}  // namespace parallax::search
