"""Device selection and the autocast settings that go with it."""

from __future__ import annotations

import os

import torch


def select_device(spec: str = "auto", local_rank: int | None = None) -> torch.device:
    """``auto`` -> cuda (the local rank's GPU under torchrun) > mps > cpu; explicit specs are checked."""
    spec = (spec or "auto").lower()
    if local_rank is None:
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(spec)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {spec!r} requested but CUDA is not available on this machine")
        if device.index is None:
            device = torch.device("cuda", local_rank % torch.cuda.device_count())
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError("device 'mps' requested but MPS is not available on this machine")
    return device


def autocast_dtype(device: torch.device) -> torch.dtype:
    """fp16 on CUDA (with a GradScaler), bf16 on CPU/MPS (no scaler needed: bf16 keeps fp32's range)."""
    return torch.float16 if device.type == "cuda" else torch.bfloat16
