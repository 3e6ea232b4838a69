"""Whether a run keeps its decoded images in RAM (``data.cache``), and filling the cache before the workers start.

``data.cache=ram`` caches, ``false`` does not; ``auto`` (the default) never caches on a CPU, where the
model's step dominates (data loading was 1 % of a measured resnet18 epoch, README), and elsewhere (a GPU)
caches when both hold:

* **it fits**: the decoded images of the training and validation splits (estimated from the headers of up
  to 64 files per split, times the number of processes that each keep a copy) take at most
  ``MEMORY_FRACTION`` of the memory available (``MemAvailable`` of ``/proc/meminfo``, lowered to what a
  cgroup v2 limit leaves). Half, because the model, its activations, the optimizer state and the workers'
  own memory need the rest, and a machine that starts swapping is slower than any decoding;
* **it pays**: decoding is at least ``MIN_DECODE_SHARE`` of a training sample's load time. The probe loads
  the first ``PROBE_SAMPLES`` training samples with and without their images cached (same random draws
  each time) and takes ``1 - cached / uncached``: the part of loading the cache removes, whatever else the
  sample does (a mosaic decodes four images, a classification crop one). It loads from deep copies of the
  training set (``decode_share``), so the run's own random transforms draw as if it had not run.

Measured under load on 2 cores (issue #22; see the README's "Defaults and options worth knowing"): the
figures and commands are there, beside the rule.

Datasets that decode no image files (in-memory digit sets, videos) have no cache; nothing is said of it.
"""

from __future__ import annotations

import copy
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from cvzoo.data.cache import ImageCache, image_cache_of
from cvzoo.data.images import DatasetError, read_header
from cvzoo.engine.workers import cpu_count, preserved_random_state, probe_copy

MEMORY_FRACTION = 0.5
MIN_DECODE_SHARE = 0.2
PROBE_SAMPLES = 8
HEADER_PROBE = 64
FILL_THREADS = 8


@dataclass
class CacheReport:
    """What ``setup_image_cache`` did: ``enabled``, ``why`` (the setting, or the automatic rule's figures),
    the bytes and images held and the seconds the fill took."""

    enabled: bool
    why: str
    nbytes: int = 0
    images: int = 0
    fill_seconds: float = 0.0

    def describe(self) -> str:
        """The run summary's words: ``image cache in RAM: 84 MB, 320 images decoded in 1.2 s (data.cache=ram)``."""
        if not self.enabled:
            return f"no image cache ({self.why})"
        return (f"image cache in RAM: {megabytes(self.nbytes)}, {self.images:,} images decoded in "
                f"{self.fill_seconds:.1f} s ({self.why})")


def megabytes(count: int) -> str:
    """``84 MB``; two significant digits below 10 MB (``0.09 MB``), so a small cache does not read as none."""
    return f"{count / 1e6:,.0f} MB" if count >= 1e7 else f"{count / 1e6:.2g} MB"


def available_memory() -> int | None:
    """Bytes this process may still use: ``MemAvailable``, or less where a cgroup v2 limit leaves less;
    None where neither can be read (not Linux)."""
    available = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
                break
    except (OSError, ValueError):
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text())
        if limit != "max":
            left = max(0, int(limit) - used)
            available = left if available is None else min(available, left)
    except (OSError, ValueError):
        pass
    return available


def decoded_bytes(paths: list[str], channels: int, probe: int = HEADER_PROBE) -> int:
    """Estimated bytes of ``paths`` decoded: the mean pixel count of up to ``probe`` evenly spaced headers
    (no decoding) times the number of distinct files and ``channels``."""
    unique = list(dict.fromkeys(paths))
    if not unique:
        return 0
    picks = sorted(set(np.linspace(0, len(unique) - 1, min(probe, len(unique))).round().astype(int).tolist()))
    areas = []
    for i in picks:
        try:
            _, (width, height) = read_header(unique[i])
        except DatasetError:  # a corrupt file holds no pixels; the dataset reports it when it is read
            continue
        areas.append(width * height)
    return int(np.mean(areas) * channels * len(unique)) if areas else 0


def decode_share(dataset: Dataset, probe: int = PROBE_SAMPLES) -> float:
    """The share of loading the first ``probe`` samples of ``dataset`` that their images' decoding takes.

    A first pass records the decoded images (and warms the file-system cache); then uncached and cached
    passes alternate twice and the faster of each counts. Each pass loads from a fresh deep copy of
    ``dataset`` that reads through the probe's own cache, with the global generators restored before every
    sample: the random transforms, including the generators detection's own (``cvzoo.data.augment.detect``),
    start every pass in the same state, so a mosaic draws the same partner images each time, and
    ``dataset`` itself is left exactly as it was. Samples that fail (a corrupt image with ``data.strict``)
    are left out here; the run reports them where it reads them.

    Raises:
        Whatever ``copy.deepcopy`` raises for a dataset that cannot be copied.
    """
    own = image_cache_of(dataset)
    if own is None:
        return 0.0
    cache = ImageCache(own[0].mode)
    indices = range(min(probe, len(dataset)))  # type: ignore[arg-type]

    def load_all(keep_misses: bool = False, active: bool = True) -> float:
        copied = probe_copy(dataset, cache)  # reads through the probe's cache; the dataset's is left alone
        cache.keep_misses, cache.active = keep_misses, active
        started = time.perf_counter()
        for index in indices:
            with preserved_random_state():
                try:
                    copied[index]
                except DatasetError:
                    pass
        elapsed = time.perf_counter() - started
        cache.keep_misses, cache.active = False, True
        return elapsed

    load_all(keep_misses=True)
    uncached, cached = [], []
    with warnings.catch_warnings():  # the first pass said what was skipped
        warnings.simplefilter("ignore")
        for _ in range(2):
            uncached.append(load_all(active=False))
            cached.append(load_all())
    return max(0.0, 1.0 - min(cached) / min(uncached)) if min(uncached) > 0 else 0.0


def automatic_rule(train: Dataset, found: list[tuple[ImageCache, list[str]]], copies: int,
                   on_cpu: bool = False) -> tuple[bool, str]:
    """``(cache?, why)`` by the rule of this module's docstring."""
    if on_cpu:
        return False, "auto: on a CPU the model's step, not decoding, bounds an epoch"
    need = sum(decoded_bytes(paths, 1 if cache.mode == "L" else 3) for cache, paths in found) * copies
    available = available_memory()
    per_process = f" ({copies} processes)" if copies > 1 else ""
    if available is None:
        return False, "auto: the available memory is unknown"
    if need > MEMORY_FRACTION * available:
        return False, (f"auto: {megabytes(need)} decoded{per_process} is more than {MEMORY_FRACTION:.0%} "
                       f"of the {megabytes(available)} available")
    try:
        share = decode_share(train)
    except (TypeError, RuntimeError, copy.Error) as err:  # an uncopyable dataset (an open file, a lock): no automatic cache
        return False, f"auto: the training set cannot be copied for the timing probe ({type(err).__name__})"
    fits = (f"{megabytes(need)} decoded{per_process} fits in {MEMORY_FRACTION:.0%} of the "
            f"{megabytes(available)} available")
    if share < MIN_DECODE_SHARE:
        return False, (f"auto: {fits}, but decoding is {share:.0%} of a training sample's load time, "
                       f"under {MIN_DECODE_SHARE:.0%}")
    return True, f"auto: {fits} and decoding is {share:.0%} of a training sample's load time"


def setup_image_cache(setting: bool | str, train: Dataset, val: Dataset | None = None,
                      copies: int = 1, on_cpu: bool = False) -> CacheReport | None:
    """Apply ``data.cache`` to the datasets: decide (``auto``), then fill their caches, in this process.

    Call it before any DataLoader starts its workers (they then share the filled pages). None when the
    training set decodes no image files.

    Args:
        setting: ``data.cache``: False, True or "ram", "auto".
        train: the training set (the automatic rule's probe loads its first samples).
        val: the validation set, cached along with it.
        copies: processes on this machine that each keep a cache (the DDP ranks).
        on_cpu: the run trains on a CPU (``auto`` does not cache there).
    """
    found_train = image_cache_of(train)
    if found_train is None:
        return None
    found_val = image_cache_of(val) if val is not None else None
    found = [found_train] + ([found_val] if found_val is not None else [])
    if setting is False:
        return CacheReport(False, "data.cache=false")
    why = "data.cache=ram"
    if setting == "auto":
        enabled, why = automatic_rule(train, found, copies, on_cpu)
        if not enabled:
            return CacheReport(False, why)
    started = time.perf_counter()
    for cache, paths in found:
        cache.fill(paths, threads=min(FILL_THREADS, cpu_count()))
    caches = list({id(cache): cache for cache, _ in found}.values())
    return CacheReport(True, why, sum(c.nbytes for c in caches), sum(c.decoded for c in caches),
                       time.perf_counter() - started)
