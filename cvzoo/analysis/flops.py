"""Multiply-accumulate counting with ``torch.utils.flop_counter.FlopCounterMode``.

One convention everywhere in cvzoo: a multiply-accumulate (MAC) is two floating-point operations, so
*GFLOPs* = 2 x *GMACs* (the YOLO tables' convention, e.g. YOLOv8n's 8.7 GFLOPs at 640), and a figure
counted in MACs is labelled *GMACs*. torchvision's tables call their multiply-add counts "GFLOPS"
(ResNet-18: 1.81): those are GMACs here. Example: a 3x3 conv from 64 to 64 channels on a 56x56 map is
64 * 64 * 9 * 56 * 56 = 115.6 M MACs = 231.2 MFLOPs. Only matrix products and convolutions (incl. attention) are counted;
element-wise ops, normalisation and bias adds are negligible and, as in the papers, left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

__all__ = ["AnalysisInputError", "FlopReport", "count_flops", "make_input"]


class AnalysisInputError(ValueError):
    """Bad model input specification (the message names the expected shape)."""


@dataclass(frozen=True)
class FlopReport:
    """MACs of one forward pass.

    Attributes:
        macs: multiply-accumulates.
        by_operator: MACs per aten operator (``"convolution"``, ``"addmm"``, ...).
    """

    macs: int
    by_operator: dict[str, int] = field(default_factory=dict)

    @property
    def gmacs(self) -> float:
        """Billions of MACs (what torchvision's tables call "GFLOPS")."""
        return self.macs / 1e9

    @property
    def flops(self) -> int:
        """Floating-point operations: one multiply and one add per MAC."""
        return 2 * self.macs

    @property
    def gflops(self) -> float:
        """Billions of FLOPs (2 x GMACs; the YOLO tables' GFLOPs)."""
        return self.flops / 1e9


def make_input(model: nn.Module, input_size: Sequence[int] | torch.Tensor, batch_size: int = 1) -> torch.Tensor:
    """A random ``[batch_size, *input_size]`` tensor on the model's device and dtype (or the tensor given)."""
    if isinstance(input_size, torch.Tensor):
        return input_size
    size = tuple(input_size)
    if not size or any(int(v) != v or v < 1 for v in size):
        raise AnalysisInputError(f"input_size must be positive ints like (3, 224, 224), got {input_size!r}")
    param = next(iter(model.parameters()), None)
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    device = param.device if param is not None else torch.device("cpu")
    generator = torch.Generator().manual_seed(0)
    return torch.randn((batch_size, *size), generator=generator, dtype=dtype).to(device)


@contextmanager
def evaluation(model: nn.Module):
    """Run a model in eval mode without autograd, restoring its training flags afterwards."""
    flags = {m: m.training for m in model.modules()}
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for module, training in flags.items():
            module.training = training


def count_flops(model: nn.Module, input_size: Sequence[int] | torch.Tensor, batch_size: int = 1) -> FlopReport:
    """Count the MACs of ``model(x)`` for ``x`` of shape ``[batch_size, *input_size]`` (eval mode).

    Args:
        model: any module taking one tensor.
        input_size: ``(C, H, W)`` without the batch dimension, or an input tensor.
        batch_size: batch size of the generated input.
    """
    from torch.utils.flop_counter import FlopCounterMode

    x = make_input(model, input_size, batch_size)
    with evaluation(model), FlopCounterMode(display=False) as counter:
        model(x)
    per_op = counter.get_flop_counts().get("Global", {})
    by_operator = {getattr(op, "__name__", str(op)).split(".")[-1]: int(v) // 2 for op, v in per_op.items()}
    return FlopReport(int(counter.get_total_flops()) // 2, by_operator)
