"""Latency and throughput of a model or exported graph on the CPU, as ``cvzoo benchmark`` reports them."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from contextlib import contextmanager

import torch


@contextmanager
def torch_threads(threads: int):
    """PyTorch's intra-op threads set to ``threads`` (0: unchanged) for the block, restored after."""
    saved = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


@torch.inference_mode()
def time_calls(run: Callable[[torch.Tensor], object], images: torch.Tensor, runs: int, warmup: int) -> list[float]:
    """Seconds of each of ``runs`` calls ``run(images)`` after ``warmup`` untimed ones (allocators, kernel
    selection and caches settle in the first calls)."""
    if runs < 1:
        raise ValueError(f"runs must be at least 1, got {runs}")
    for _ in range(warmup):
        run(images)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run(images)
        times.append(time.perf_counter() - start)
    return times


def latency_ms(run: Callable[[torch.Tensor], object], image: torch.Tensor, runs: int = 50, warmup: int = 10) -> float:
    """Median milliseconds of one call on ``image`` (the median: shared machines have long-tailed times)."""
    return 1000 * statistics.median(time_calls(run, image, runs, warmup))


def throughput(run: Callable[[torch.Tensor], object], batch: torch.Tensor, runs: int = 10, warmup: int = 2) -> float:
    """Images per second at ``batch``'s size, from the median batch time."""
    return batch.shape[0] / statistics.median(time_calls(run, batch, runs, warmup))
