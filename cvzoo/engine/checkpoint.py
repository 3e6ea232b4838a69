"""Atomic checkpoints and the RNG states that make a resumed run continue exactly."""

from __future__ import annotations

import os
import random
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None]) -> None:
    """Write a file through ``write(handle)`` into a temporary file beside it, fsync, then rename.

    ``os.replace`` is atomic on POSIX and Windows, so a reader (or a run killed mid-write) sees either
    the old file or the new one, never half of one. A kill can leave the temporary file behind; every
    later successful write of the same file removes such orphans.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    for orphan in path.parent.glob(f".{path.name}.*.tmp"):
        orphan.unlink(missing_ok=True)


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save(obj)`` to ``path`` atomically (see ``atomic_write``)."""
    atomic_write(path, lambda handle: torch.save(obj, handle))


def atomic_write_text(path: str | Path, text: str) -> None:
    """Replace the text file ``path`` atomically (see ``atomic_write``)."""
    atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def rng_states() -> dict[str, Any]:
    states = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"].cpu() if hasattr(states["torch"], "cpu") else states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a cvzoo training checkpoint (full pickle: optimizer/scheduler states and RNG states)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        # weights_only=False: our own checkpoints carry numpy RNG states and config dicts.
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # torch raises several types for truncated/corrupt files
        raise RuntimeError(f"cannot read checkpoint {path}: {err}") from err
