"""TorchScript export by tracing (the zoo's forward passes are trace-friendly: no data-dependent flow)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from cvzoo.export.runtime import METADATA_FILE, OUTPUT_NAMES_KEY


@torch.no_grad()
def export_torchscript(model: nn.Module, path: str | Path, example: torch.Tensor, check: bool = True,
                       atol: float = 1e-5, metadata: Mapping[str, str] | None = None,
                       output_names: Sequence[str] | None = None) -> Path:
    """Trace ``model`` to ``path``; ``metadata`` (the strings an ONNX export records) and ``output_names`` go
    into the archive's ``extra/metadata.json``, so that ``cvzoo predict/val model.torchscript`` rebuild
    the task from the file alone (``cvzoo.export.runtime.TorchScriptModel``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    traced = torch.jit.trace(model, example, check_trace=False, strict=False)
    entries = {**(metadata or {}), **({OUTPUT_NAMES_KEY: json.dumps(list(output_names))} if output_names else {})}
    traced.save(str(path), _extra_files={METADATA_FILE: json.dumps(entries)})
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
