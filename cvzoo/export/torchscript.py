"""TorchScript export by tracing (the zoo's forward passes are trace-friendly: no data-dependent flow)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


@torch.no_grad()
def export_torchscript(model: nn.Module, path: str | Path, example: torch.Tensor, check: bool = True,
                       atol: float = 1e-5) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    traced = torch.jit.trace(model, example, check_trace=False, strict=False)
    traced.save(str(path))
    if check:
        loaded = torch.jit.load(str(path))
        expected, got = model(example), loaded(example)
        expected = expected if isinstance(expected, (tuple, list)) else [expected]
        got = got if isinstance(got, (tuple, list)) else [got]
        for a, b in zip(expected, got):
            diff = float((a - b).abs().max()) if a.numel() else 0.0
            if diff > atol:
                raise RuntimeError(f"{path}: TorchScript output differs from eager by {diff:.3g}")
    return path
