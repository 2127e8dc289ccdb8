"""Timing shared by the benchmarks: medians of interleaved runs."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable


def _runs(candidates: dict[str, Callable[[], object]], repeat: int, warmup: int,
          collect: bool, clock: Callable[[], float]) -> tuple[dict[str, list[float]], set[str]]:
    """Each candidate's times, round by round, and the candidates that raised in warm-up."""
    failed = set()
    for name, run in candidates.items():  # warm-up: allocator, caches, lazy imports
        try:
            for _ in range(warmup):
                run()
        except Exception:
            failed.add(name)
    candidates = {k: v for k, v in candidates.items() if k not in failed}
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeat):
        for name, run in candidates.items():
            if collect:
                gc.collect()
            start = clock()
            run()
            times[name].append(clock() - start)
    return times, failed


def interleaved(candidates: dict[str, Callable[[], object]], repeat: int,
                warmup: int = 2, collect: bool = False,
                clock: Callable[[], float] = time.perf_counter) -> dict[str, float]:
    """Median seconds of each candidate, run in turn so that drift hits them all alike.

    ``collect``: a full garbage collection before each run, untimed, so that a candidate that
    leaves much cyclic garbage (the ONNX exporter does) does not bill the next one for it.
    ``clock``: wall time by default; ``time.process_time`` counts this process's CPU time
    alone, which other processes on a shared machine do not add to (with one thread, the work
    done).

    A candidate that raises during warm-up (torchsummary on models it cannot handle) is
    reported as NaN.
    """
    times, failed = _runs(candidates, repeat, warmup, collect, clock)
    result = {name: statistics.median(values) for name, values in times.items()}
    return result | dict.fromkeys(failed, float("nan"))


def paired_ratios(candidates: dict[str, Callable[[], object]], base: str, repeat: int,
                  warmup: int = 2, clock: Callable[[], float] = time.perf_counter,
                  ) -> dict[str, float]:
    """Each candidate's time over ``base``'s in the same round, median over the rounds; for
    ``base`` itself, its median seconds. On a shared machine a forward pass's own time swings
    by 10-20% from one second to the next, far more than a few percent of overhead: runs of the
    same round see the same machine, so their ratio holds still where a ratio of medians
    taken over minutes does not. NaN for a candidate that raised in warm-up."""
    times, failed = _runs(candidates, repeat, warmup, False, clock)
    reference = times[base]
    result = {name: statistics.median(t / b for t, b in zip(values, reference, strict=True))
              for name, values in times.items() if name != base}
    return result | {base: statistics.median(reference)} | dict.fromkeys(failed, float("nan"))
