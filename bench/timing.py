"""Eager timing for the torch benchmarks: CUDA events around each call, after warm-up calls,
median in ms (graph replay is graph_timing.py's). torch is imported on first use, so a script
can parse its arguments (--help) on a machine without it."""
import statistics


def median_ms(fn, reps, warmup):
    """Median ms of fn() over `reps` calls, each between two CUDA events on the current stream
    and waited for, after `warmup` untimed calls and a device synchronize."""
    import torch
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
        fn()
        e1.record()
        e1.synchronize()
        times.append(e0.elapsed_time(e1))
    return statistics.median(times)
