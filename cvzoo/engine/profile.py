"""Where an epoch's time goes (``train.profile`` / ``cvzoo train --profile``).

The trainer wraps each stage of an epoch in ``profiler.stage(name)``: waiting for the next batch
(``data``), moving it to the device, the forward pass with the loss, the backward pass, the optimizer step
(clipping, step, zeroing), the schedule and EMA update, validation and the checkpoint writes. At the end of
an epoch ``summary`` gives one line with the seconds and share of each stage. Disabled, a stage is a
no-op context, so the loop pays nothing for it. On CUDA the device is synchronised at every stage boundary
(kernels run asynchronously: without that, a stage would be charged for the previous one's kernels); that
makes a profiled epoch somewhat slower than an unprofiled one.

Time to first step (issue #22): every run records the wall seconds from the start of its process to the
end of its first optimizer step (imports, config, datasets, model, loaders, the first batch and its
forward, backward and step), the figure a user waits before training starts. The process start is the
kernel's record of it, so the imports before any cvzoo code ran are counted; ``seconds_since_process_start``
reads it.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator

import torch

STAGES = ("data", "to_device", "forward", "backward", "optimizer", "schedule_ema", "validation", "checkpoint")


class EpochProfiler:
    """Accumulates wall seconds per named stage over one epoch."""

    def __init__(self, enabled: bool, device: torch.device) -> None:
        self.enabled = enabled
        self.synchronize = enabled and device.type == "cuda"
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        if not self.enabled:
            yield
            return
        self._sync()
        started = time.perf_counter()
        try:
            yield
        finally:
            self._sync()
            self.add(name, time.perf_counter() - started)

    def add(self, name: str, seconds: float) -> None:
        if self.enabled:
            self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def _sync(self) -> None:
        if self.synchronize:
            torch.cuda.synchronize()

    def summary(self, epoch: int) -> str:
        """``profile epoch N: data 1.20 s (31%), forward ...; total 3.9 s`` in ``STAGES`` order, then others."""
        total = sum(self.seconds.values())
        names = [n for n in STAGES if n in self.seconds] + sorted(set(self.seconds) - set(STAGES))
        parts = [f"{n} {self.seconds[n]:.2f} s ({100 * self.seconds[n] / total:.0f}%)" for n in names] if total else []
        return f"profile epoch {epoch}: " + ", ".join(parts) + f"; total {total:.2f} s"

    def reset(self) -> None:
        self.seconds = {}


class StartupPhases:
    """A run's start-up as consecutive phases, each ended by ``mark(name)`` (a phase ends once).

    The first phase, ``before``, is what happened before this object existed (the interpreter, the imports,
    the config), when the process start is known. ``summary`` is the ``train.profile`` line that says where
    the time to the first step went.
    """

    def __init__(self, before: float | None, before_name: str = "imports, config") -> None:
        self.phases: dict[str, float] = {} if before is None else {before_name: before}
        self._last = time.perf_counter()

    def mark(self, name: str) -> None:
        if name in self.phases:
            return
        now = time.perf_counter()
        self.phases[name] = now - self._last
        self._last = now

    def summary(self) -> str:
        """``profile start-up: imports, config 2.10 s (41%), datasets ...; total 5.13 s`` in phase order."""
        total = sum(self.phases.values())
        parts = [f"{name} {seconds:.2f} s ({100 * seconds / total:.0f}%)" for name, seconds in self.phases.items()]
        return "profile start-up: " + ", ".join(parts) + f"; total {total:.2f} s"


def seconds_since_process_start() -> float | None:
    """Wall seconds since this process started, or None where the start is not known (not Linux).

    Linux records a process's start in clock ticks after boot (``/proc/self/stat``, field 22) and the
    seconds since boot in ``/proc/uptime``, both on the boot clock (proc(5)); their difference has the
    resolution of a tick (10 ms). The start is when the process was forked, so it includes the interpreter's
    own start and every import.
    """
    try:
        with open("/proc/self/stat") as handle:
            stat = handle.read()
        with open("/proc/uptime") as handle:
            uptime = float(handle.read().split()[0])
        # The command name (field 2) is in parentheses and may hold spaces: count the fields after it.
        start_ticks = int(stat.rsplit(")", 1)[1].split()[19])
        return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None
