"""Device selection and the autocast settings that go with it."""

from __future__ import annotations

import os

import torch


class DeviceError(ValueError, RuntimeError):
    """A device spec that names no device of this machine. A ValueError (bad user input, one CLI line)
    and a RuntimeError (what this module raised before, for callers that catch that)."""


def select_device(spec: str = "auto", local_rank: int | None = None, key: str = "train.device") -> torch.device:
    """``auto`` -> cuda (the local rank's GPU under torchrun) > mps > cpu; explicit specs are checked.

    Errors name ``key``: the config key (the trainer's default) or the flag the spec came from.
    """
    spec = (spec or "auto").lower()
    if local_rank is None:
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise DeviceError(f"{key}: {spec!r} is not a device; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"{key}: {spec!r} requested but no CUDA device is available on this machine; "
                              "use cpu or auto")
        count = torch.cuda.device_count()
        if device.index is None:
            device = torch.device("cuda", local_rank % count)
        elif device.index >= count:
            raise DeviceError(f"{key}: {spec!r} requested but this machine has {count} CUDA device(s) "
                              f"(cuda:0 to cuda:{count - 1})")
    elif device.type == "mps" and not _mps_available():
        raise DeviceError(f"{key}: {spec!r} requested but no MPS device is available on this machine; "
                          "use cpu or auto")
    return device


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def autocast_dtype(device: torch.device) -> torch.dtype:
    """fp16 on CUDA (with a GradScaler), bf16 on CPU/MPS (no scaler needed: bf16 keeps fp32's range)."""
    return torch.float16 if device.type == "cuda" else torch.bfloat16
