"""Fills Triton's on-disk compile cache for the Parallax authors' autotuned training kernels, in
parallel, so that bench/backward_bench.py's authors column then only benchmarks when it autotunes.

Their forward and backward kernels are each @triton.autotune'd over some 36 configs. On the first
call per shape the calling process compiles every config one after another (CPU-bound: over 330 s
a shape on an H200 host), which does not fit a benchmark's device call. Here a pool of spawned
processes shares the configs out: for config index i, a worker sets every autotuner of the
authors' training module to the single config i (a one-config autotuner compiles and runs it,
no benchmarking) and runs one forward + backward of their parallax_func at the benchmark's shape
(same dtype, layout and sizes, hence the same specialisation), which writes the binaries under
TRITON_CACHE_DIR. A later process with the same TRITON_CACHE_DIR autotunes with every compile a
cache hit. Configs that fail (out of shared memory, say) are counted and left out: the real
autotuner skips them as well. Autotuners with fewer configs take index i modulo their count.

Usage: python3 bench/authors_prewarm.py [--only I,J | --shapes all|quick] [--anchors PATH]
           [--procs N] [--timeout-s S] [--dry-run]
(`--only` and `--shapes` index backward_bench.py's shape list.) Exits 0 when configs fail to
compile; 1 when the authors' package or Triton cannot be loaded.
"""
import argparse
import json
import multiprocessing
import os
import sys
import time
import traceback

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
if BENCH not in sys.path:
    sys.path.insert(0, BENCH)

DEFAULT_TRITON_CACHE = "/tmp/plx-triton-cache"
DEFAULT_ANCHORS = os.path.join(REPO, ".carry", "anchors", "authors-parallax")
# Configs a failing autotuner is retried with (in the authors' order, smallest tiles first), so
# that the kernels after it in forward + backward still compile at the task's config.
FALLBACKS = 4


def triton_cache_dir():
    """TRITON_CACHE_DIR, set to DEFAULT_TRITON_CACHE when unset. Call it before triton is
    imported and before the pool starts: the workers and the timing process must share it."""
    path = os.environ.setdefault("TRITON_CACHE_DIR", DEFAULT_TRITON_CACHE)
    os.makedirs(path, exist_ok=True)
    return path


def _err(e):
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0] if lines else ''}"[:240]


def autotuners(module):
    """{name: Autotuner} of the module's autotuned kernels, found by type (the names are the
    authors' private ones), also under other decorators (e.g. @triton.heuristics outside)."""
    try:
        from triton.runtime.autotuner import Autotuner
    except ImportError as e:
        raise RuntimeError(f"triton.runtime.autotuner.Autotuner not importable ({_err(e)})") from e
    found, seen = {}, set()
    for name, obj in sorted(vars(module).items()):
        for _ in range(4):
            if isinstance(obj, Autotuner):
                if id(obj) not in seen:
                    seen.add(id(obj))
                    found[name] = obj
                break
            obj = getattr(obj, "fn", None)
            if obj is None:
                break
    if not found:
        raise RuntimeError(f"no triton Autotuner in {getattr(module, '__file__', module)}: the authors' "
                           "kernels are no longer @triton.autotune'd (or Triton moved the class); "
                           "nothing to prewarm")
    for name, t in found.items():
        if not isinstance(getattr(t, "configs", None), list) or not t.configs:
            raise RuntimeError(f"autotuner {name} has no list of configs (.configs): this Triton's "
                               "Autotuner is not the one this script knows")
    return found


def autotune_results_cache():
    """Whether this Triton can keep autotune *results* on disk, and how to turn it on."""
    import inspect
    from triton.runtime.autotuner import Autotuner
    if "cache_results" in inspect.signature(Autotuner.__init__).parameters:
        return ("supported: TRITON_CACHE_AUTOTUNING=1 (or autotune(cache_results=True)) keeps each "
                "shape's timings under TRITON_CACHE_DIR, so a later process on the same machine skips "
                "the benchmarking as well")
    return "not supported by this Triton (no Autotuner(cache_results=...))"


def load_train(anchors):
    from prefill_anchors import load_authors  # imports torch
    return load_authors(anchors)


# ---------------------------------------------------------------------------------------------
# Worker side (spawned processes).

_W = {}


def _guard(name, tuner):
    """Replaces tuner.run (per instance) so that a failing config is recorded and the call retried
    with a fallback config: the kernels launched after it still run, and compile, at the task's
    config instead of being skipped by the exception."""
    plain = tuner.run

    def run(*args, **kwargs):
        try:
            ret = plain(*args, **kwargs)
            _W["ok"].add(name)
            return ret
        except Exception as e:  # noqa: BLE001
            _W["failed"][name] = _err(e)
        for cfg in _W["configs"][name][:FALLBACKS]:
            tuner.configs = [cfg]
            try:
                return plain(*args, **kwargs)
            except Exception:  # noqa: BLE001
                continue
        raise RuntimeError(f"{name}: its config and {FALLBACKS} fallbacks all failed")

    tuner.run = run


def _init(anchors):
    # An exception here would make the pool respawn workers forever: keep it for the tasks.
    try:
        train = load_train(anchors)[0]
        tuners = autotuners(train)
        if not callable(getattr(train, "parallax_func", None)):
            raise RuntimeError("the authors' training module has no parallax_func")
        _W.update(train=train, tuners=tuners, configs={n: list(t.configs) for n, t in tuners.items()})
        for name, t in tuners.items():
            _guard(name, t)
    except Exception as e:  # noqa: BLE001
        _W["init_error"] = _err(e)


def _task(task):
    """One config index at one shape: {shape, config, ok: [tuners], failed: {tuner: error}, error}."""
    si, shape, idx = task
    t0 = time.time()
    res = {"shape": si, "config": idx, "ok": [], "failed": {}, "error": None}
    if "init_error" in _W:
        res["error"] = "worker start: " + _W["init_error"]
        return res
    import torch
    _W["ok"], _W["failed"] = set(), {}
    for name, t in _W["tuners"].items():
        cfgs = _W["configs"][name]
        t.configs = [cfgs[idx % len(cfgs)]]
    b, hq, hkv, length, d = shape
    try:
        # As backward_bench.py makes them: contiguous bf16 [B, H, L, D].
        mk = lambda h: torch.randn(b, h, length, d, device="cuda", dtype=torch.bfloat16).requires_grad_()  # noqa: E731
        q, r, k, v = mk(hq), mk(hq), mk(hkv), mk(hkv)
        out = _W["train"].parallax_func(q, r, k, v)
        out.backward(torch.randn(b, hq, length, d, device="cuda", dtype=torch.bfloat16))
        torch.cuda.synchronize()
    except Exception as e:  # noqa: BLE001
        res["error"] = _err(e)
    finally:
        q = r = k = v = out = None  # noqa: F841
    res["ok"], res["failed"] = sorted(_W["ok"]), dict(_W["failed"])
    res["seconds"] = round(time.time() - t0, 1)
    return res


# ---------------------------------------------------------------------------------------------
# Parent side.

def plan(anchors):
    """(train module, version, {name: Autotuner}, number of config indices). Imports torch and
    triton in this process; needs no GPU."""
    train, version = load_train(anchors)
    tuners = autotuners(train)
    return train, version, tuners, max(len(t.configs) for t in tuners.values())


def default_procs():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def prewarm(shapes, anchors=DEFAULT_ANCHORS, procs=None, timeout_s=480.0, log=print):
    """Compiles every config of the authors' autotuners at each (index, (B, Hq, Hkv, L, D)) of
    `shapes` in `procs` spawned processes. Returns a summary dict; config failures and a timeout
    are in it, not raised (what finished stays in the cache)."""
    t0 = time.time()
    cache = triton_cache_dir()
    anchors = os.path.abspath(anchors)
    _, version, tuners, n = plan(anchors)
    tasks = [(si, tuple(shape), i) for si, shape in shapes for i in range(n)]
    procs = max(1, min(procs or default_procs(), len(tasks)))
    log(f"prewarm: {len(tasks)} tasks ({len(shapes)} shapes x {n} config indices; autotuners "
        f"{', '.join(f'{k}[{len(t.configs)}]' for k, t in tuners.items())}) in {procs} processes, "
        f"TRITON_CACHE_DIR={cache}, authors {version}", flush=True)
    per = {name: {"ok": 0, "failed": 0, "errors": []} for name in tuners}
    task_errors, done, timed_out = [], 0, False
    pool = multiprocessing.get_context("spawn").Pool(processes=procs, initializer=_init, initargs=(anchors,))
    try:
        results = pool.imap_unordered(_task, tasks, chunksize=1)
        deadline = t0 + timeout_s
        while done < len(tasks):
            try:
                res = results.next(timeout=max(1.0, deadline - time.time()))
            except multiprocessing.TimeoutError:
                timed_out = True
                break
            except Exception as e:  # noqa: BLE001  (not expected: _task catches its own)
                res = {"shape": "?", "config": "?", "ok": [], "failed": {}, "error": _err(e)}
            done += 1
            for name in res["ok"]:
                per.setdefault(name, {"ok": 0, "failed": 0, "errors": []})["ok"] += 1
            for name, msg in res["failed"].items():
                p = per.setdefault(name, {"ok": 0, "failed": 0, "errors": []})
                p["failed"] += 1
                if len(p["errors"]) < 3:
                    p["errors"].append(f"shape {res['shape']} config {res['config']}: {msg}")
            if res["error"]:
                task_errors.append(f"shape {res['shape']} config {res['config']}: {res['error']}")
            failed = ",".join(sorted(res["failed"])) or "-"
            log(f"  [{time.time() - t0:6.1f}s] {done}/{len(tasks)} done: shape {res['shape']} config "
                f"{res['config']} ({res.get('seconds', '?')} s) failed: {failed}"
                + (f"; error: {res['error']}" if res["error"] else ""), flush=True)
    finally:
        if timed_out:
            pool.terminate()
        else:
            pool.close()
        pool.join()
    summary = {"tasks": len(tasks), "done": done, "procs": procs, "seconds": round(time.time() - t0, 1),
               "timed_out": timed_out, "cache_dir": cache, "per_autotuner": per,
               "task_errors": len(task_errors), "first_task_errors": task_errors[:3]}
    log(f"prewarm: {done}/{len(tasks)} tasks in {summary['seconds']} s"
        + (f" (stopped at the {timeout_s:.0f} s limit: the rest compiles in the timing process)" if timed_out else "")
        + "; per autotuner ok/failed: "
        + ", ".join(f"{k} {v['ok']}/{v['failed']}" for k, v in per.items())
        + f"; task errors {len(task_errors)}", flush=True)
    for k, v in per.items():
        for msg in v["errors"]:
            log(f"    {k}: {msg}", flush=True)
    for msg in task_errors[:3]:
        log(f"    task: {msg}", flush=True)
    return summary


def dry_run(shapes, anchors):
    cache = triton_cache_dir()
    import triton
    _, version, tuners, n = plan(os.path.abspath(anchors))
    print(f"triton {triton.__version__}; TRITON_CACHE_DIR={cache}; authors {version}")
    print(f"autotune results on disk: {autotune_results_cache()}")
    listed = {}
    for name, t in tuners.items():
        prune = getattr(t, "early_config_prune", None)
        print(f"{name}: {len(t.configs)} configs, key {list(getattr(t, 'keys', []) or [])}"
              + (f", early_config_prune {getattr(prune, '__name__', prune)} (compiled anyway)" if prune else ""))
        text = [str(cfg) for cfg in t.configs]
        if tuple(text) in listed:
            print(f"  the same configs as {listed[tuple(text)]}")
            continue
        listed[tuple(text)] = name
        for i, line in enumerate(text):
            print(f"  [{i:2d}] {line}")
    print(f"would run {len(shapes) * n} tasks ({n} config indices x shapes "
          f"{', '.join(f'{si}: {s}' for si, s in shapes)}) in {default_procs()} processes")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--anchors", default=DEFAULT_ANCHORS, help="the authors' package folder")
    ap.add_argument("--shapes", choices=("all", "quick"), default="all")
    ap.add_argument("--only", default=None, help="comma-separated indices into backward_bench.py's shape list")
    ap.add_argument("--procs", type=int, default=default_procs())
    ap.add_argument("--timeout-s", type=float, default=540, help="stop the pool after this many seconds")
    ap.add_argument("--dry-run", action="store_true",
                    help="list the autotuners and configs it would compile (imports torch and triton, no GPU)")
    ap.add_argument("--out", default=None, help="write the summary here (JSON)")
    args = ap.parse_args()
    from backward_bench import select_shapes  # here, not at the top: backward_bench imports this module
    shapes = select_shapes(args.shapes, args.only)
    try:
        if args.dry_run:
            dry_run(shapes, args.anchors)
            return 0
        summary = prewarm(shapes, args.anchors, args.procs, args.timeout_s)
    except Exception as e:  # noqa: BLE001  (import errors of any kind: say what is missing)
        traceback.print_exc()
        print(f"authors_prewarm: cannot load the authors' kernels: {_err(e)} "
              "(needs torch and triton importable, and the authors' package at --anchors)", file=sys.stderr)
        return 1
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(summary, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
