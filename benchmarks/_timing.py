"""Shared helpers of the benchmark scripts: alternating A/B timing and peak memory."""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable


def alternate(runs: dict[str, Callable[[], float | None]], repeats: int = 5, warmup: int = 1) -> dict[str, list[float]]:
    """Run each callable ``warmup`` times, then A B A B ... ``repeats`` rounds.

    A callable returns its own measurement (e.g. images/s) or None to be timed by wall clock (seconds).
    """
    for fn in runs.values():
        for _ in range(warmup):
            fn()
    results: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            start = time.perf_counter()
            value = fn()
            results[name].append(time.perf_counter() - start if value is None else value)
    return results


def median(values: list[float]) -> float:
    return statistics.median(values)


def median_ratio(a: list[float], b: list[float]) -> float:
    """Median of the per-round ratios a_i / b_i (robust to drifting machine load)."""
    return statistics.median(x / y for x, y in zip(a, b))


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def alternate_pairs(calls: dict[str, Callable[[], object]], repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Two callables timed in pairs, A B then B A (so neither always runs first, after the other's caches),
    after ``warmup`` calls of each; returns the wall seconds of every timed call per name."""
    (a, run_a), (b, run_b) = calls.items()
    for _ in range(warmup):
        run_a(), run_b()
    times: dict[str, list[float]] = {a: [], b: []}
    for i in range(repeats):
        order = ((a, run_a), (b, run_b))
        for name, fn in order if i % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def operator_self_times(prof) -> dict[str, tuple[int, float]]:
    """Operator name -> (calls, self CPU ms) of a finished ``torch.profiler.profile`` run."""
    return {e.key: (e.count, e.self_cpu_time_total / 1e3) for e in prof.key_averages()}


def print_operator_comparison(table: dict[str, dict[str, tuple[int, float]]], what: str, rows: int = 25) -> None:
    """The ``cvzoo`` / ``tv`` operator tables side by side: total self CPU, then the ``rows`` operators whose
    self time differs most between the two (calls as cvzoo/torchvision)."""
    totals = {key: sum(ms for _, ms in ops.values()) for key, ops in table.items()}
    print(f"{what}: self CPU {totals['cvzoo']:.0f} ms cvzoo, {totals['tv']:.0f} ms torchvision")
    names = sorted(set(table["cvzoo"]) | set(table["tv"]),
                   key=lambda n: -abs(table["cvzoo"].get(n, (0, 0.0))[1] - table["tv"].get(n, (0, 0.0))[1]))
    print(f"{'operator':56s} {'calls':>11s} {'self ms cvzoo':>14s} {'self ms tv':>11s}")
    for op in names[:rows]:
        (n_ours, ms_ours), (n_ref, ms_ref) = table["cvzoo"].get(op, (0, 0.0)), table["tv"].get(op, (0, 0.0))
        print(f"{op[:56]:56s} {n_ours:5d}/{n_ref:<5d} {ms_ours:14.1f} {ms_ref:11.1f}")
