"""Stopping a run on SIGINT (Ctrl-C) or SIGTERM without losing or corrupting anything.

Python's default turns Ctrl-C into a ``KeyboardInterrupt`` wherever the program happens to be: in the
middle of an optimizer step (half the parameters updated), between a forward pass and its optimizer
step (BatchNorm statistics already moved), or inside a checkpoint write. While the trainer runs,
``StopRequests`` replaces that with a request: the first signal is noted and the trainer stops at its
next safe point (after an optimizer step, or after the epoch's checkpoint), saving a checkpoint from
which the run continues exactly as if it had never stopped. A second signal stops at once, without
saving: ``last.pt`` then holds the last completed save (checkpoints are written atomically).
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any


class ForcedStop(KeyboardInterrupt):
    """A second SIGINT/SIGTERM arrived before the trainer reached a safe point."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"second {signal.Signals(signum).name}")
        self.signum = signum


class StopRequests:
    """Context manager that turns SIGINT/SIGTERM into a stop request (``requested``).

    Outside the main thread signal handlers cannot be installed; there Ctrl-C stays a
    ``KeyboardInterrupt`` (the trainer still saves a resumable checkpoint for it).
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, log: Callable[[str], None]) -> None:
        self.log = log
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def _handle(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if self.signum is not None:
            raise ForcedStop(signum)
        self.signum = signum
        self.log(f"{name} received: stopping at the next optimizer step or epoch end with a resumable "
                 "checkpoint (send it again to stop at once, keeping the last saved checkpoint)")

    def __enter__(self) -> StopRequests:
        for signum in self.SIGNALS:
            try:
                self._previous[signum] = signal.signal(signum, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def __exit__(self, *exc_info: Any) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()
