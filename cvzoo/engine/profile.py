"""Where an epoch's time goes (``train.profile`` / ``cvzoo train --profile``).

The trainer wraps each stage of an epoch in ``profiler.stage(name)``: waiting for the next batch
(``data``), moving it to the device, the forward pass with the loss, the backward pass, the optimizer step
(clipping, step, zeroing), the schedule and EMA update, validation and the checkpoint writes. At the end of
an epoch ``summary`` gives one line with the seconds and share of each stage. Disabled, a stage is a
no-op context, so the loop pays nothing for it. On CUDA the device is synchronised at every stage boundary
(kernels run asynchronously: without that, a stage would be charged for the previous one's kernels); that
makes a profiled epoch somewhat slower than an unprofiled one.
"""

from __future__ import annotations

import contextlib
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
