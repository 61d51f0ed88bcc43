"""The one way the speed benchmarks time a call: one warm-up run (first-call allocations, thread pools), then the
median of `repeats` (robust to the odd slow run on a shared 2-core machine)."""

import statistics
import time


def median_seconds(run, repeats: int) -> float:
    run()  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)
