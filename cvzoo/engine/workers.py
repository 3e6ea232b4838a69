"""How many data-loading worker processes a run gets when ``data.workers`` is -1 (the default).

On a GPU the compute is elsewhere: up to 8 workers (one core left to the main process). On a CPU the
workers and the compute threads share the cores, so workers pay only when loading a batch is a real cost:
``auto_workers`` times the loading of one batch in the main process and picks in-process loading when
that costs less than ``IN_PROCESS_BELOW_S`` (in-memory tensors such as the idx/npz digit sets, where the
inter-process copy would cost more than the load), else one worker per core (at most 8).

Measured on 2 cores (issue #22, aerial tiles of 320 px, yolov8n, batch 16, 10 epochs): in-process
loading 163 s, 2 workers 65 s; a batch of 64 Fashion-MNIST digits loads in well under a millisecond.
The probe loads from a copy of the dataset and restores the global generators, so it leaves every random
generator as it found it, the generators detection's transforms own included: a run whose probe settles on
in-process loading draws the augmentations of the same run with ``data.workers=0``.
"""

from __future__ import annotations

import copy
import math
import os
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch.utils.data import Dataset

from cvzoo.data.cache import ImageCache, image_cache_of

# A batch that loads faster than this stays in the main process on a CPU.
IN_PROCESS_BELOW_S = 0.02
MAX_WORKERS = 8


def cpu_count() -> int:
    """The cores this process may run on (the affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@contextmanager
def preserved_random_state() -> Iterator[None]:
    """Python's, NumPy's and torch's CPU generators are as they were on entry once the block ends: a probe's
    augmentation draws leave no trace in the run."""
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])


def _sample_data(dataset: Dataset, depth: int = 4) -> list[object]:
    """The arrays, tensors and lists of integers that ``dataset`` and the datasets it wraps (``Subset``...)
    hold: the samples of in-memory data (idx, CIFAR), labels and subset indices, which loading reads and
    never writes."""
    found: list[object] = []
    for value in getattr(dataset, "__dict__", {}).values():
        if isinstance(value, (np.ndarray, torch.Tensor)):
            found.append(value)
        elif isinstance(value, (list, tuple)) and value and all(isinstance(item, int) for item in value):
            found.append(value)
        elif isinstance(value, Dataset) and depth > 0:
            found += _sample_data(value, depth - 1)
    return found


def probe_copy(dataset: Dataset, cache: ImageCache | None = None) -> Dataset:
    """A deep copy of ``dataset`` for a start-up probe to load samples from, reading its images through
    ``cache`` (default: the dataset's own image cache).

    Restoring the global generators is not enough for a probe: some random transforms own their generators
    (detection's, ``cvzoo.data.augment.detect``, seeded in the process that first draws), and loading from
    the dataset itself would advance them, so the run would then draw other augmentations than without the
    probe. The copy draws instead, and the dataset is left exactly as it was. What only holds data is
    shared rather than copied: the image cache (once filled it may hold gigabytes) and the in-memory samples
    with their labels and indices (copying the 60,000 Fashion-MNIST digits, labels and subset indices took
    90 ms under load: start-up time of a CPU run for nothing); none of them holds random state.

    Raises:
        Whatever ``copy.deepcopy`` raises for a dataset that cannot be copied (an open file, a lock).
    """
    # deepcopy's memo maps an object to its copy: an object that is its own "copy" is shared.
    memo: dict[int, object] = {id(data): data for data in _sample_data(dataset)}
    found = image_cache_of(dataset)
    if found is not None:
        memo[id(found[0])] = found[0] if cache is None else cache
    return copy.deepcopy(dataset, memo)


def batch_load_seconds(dataset: Dataset, batch_size: int, probe: int = 8) -> float:
    """Seconds to load ``batch_size`` samples in this process, estimated from the first ``probe`` ones.

    The samples load from ``probe_copy(dataset)`` with the global generators (Python, NumPy, torch) restored
    afterwards: augmentations drawn here leave no trace in the run. A dataset that cannot be copied is not
    timed (``math.inf``: it counts as slow, and the run's draws stay those of worker processes).
    """
    count = min(probe, batch_size, len(dataset))  # type: ignore[arg-type]
    if count == 0:
        return 0.0
    try:
        copied = probe_copy(dataset)
    except (TypeError, RuntimeError, copy.Error):
        return math.inf
    with preserved_random_state():
        copied[0]  # first touch: file-system caches and lazy indexes are not loading cost
        started = time.perf_counter()
        for index in range(count):
            copied[index]
        per_sample = (time.perf_counter() - started) / count
    return per_sample * batch_size


def auto_workers(device: torch.device, requested: int, dataset: Dataset | None = None, batch_size: int = 1) -> int:
    """``requested`` when it is >= 0, else the rule of this module's docstring."""
    if requested >= 0:
        return requested
    cores = cpu_count()
    if device.type == "cuda":
        return min(MAX_WORKERS, max(1, cores - 1))
    if cores < 2 or dataset is None:
        return 0
    if batch_load_seconds(dataset, batch_size) < IN_PROCESS_BELOW_S:
        return 0
    return min(MAX_WORKERS, cores)
