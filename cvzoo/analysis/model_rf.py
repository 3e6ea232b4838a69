"""Receptive field of a model: analytic composition for plain CNNs, and an empirical gradient check.

Analytic rule (:func:`model_receptive_field`): one forward pass records, in call order, every leaf
module and every functional torch op run between leaves. The network is "plain" when its spatial
part is a single chain: each leaf takes the previous leaf's output, unmodified (same tensor, no
in-place change in between). Conv2d / MaxPool2d / AvgPool2d contribute (kernel, stride, dilation,
padding); other leaves and functional ops that keep the spatial size and take one feature map
(BatchNorm, ReLU, dropout, ``F.relu``) pass through. The chain ends at the first global/adaptive
pooling or at the first op whose output is no longer a 4-D map (flatten, linear): the result is the
receptive field of the last feature map before the head. ``None`` is returned when the net is not
plain: a branch or merge (residuals, concatenation, Inception), an op that changes the spatial size
without being a conv/pool module (upsampling, transposed conv, functional pooling), or no spatial layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from cvzoo.analysis.conv_arith import ReceptiveField, receptive_field
from cvzoo.analysis.flops import evaluation, make_input

__all__ = ["ModelReceptiveField", "empirical_receptive_field", "model_receptive_field"]

_SPATIAL = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)  # the layers that are composed
_GLOBAL = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Flatten, nn.Linear)


@dataclass(frozen=True)
class ModelReceptiveField:
    """Receptive field per axis of the last feature map of a plain CNN.

    Attributes:
        height: composition along rows.
        width: composition along columns.
        layers: names of the conv/pool modules composed, in forward order.
    """

    height: ReceptiveField
    width: ReceptiveField
    layers: tuple[str, ...]

    @property
    def size(self) -> tuple[int, int]:
        return self.height.size, self.width.size

    @property
    def jump(self) -> tuple[int, int]:
        return self.height.jump, self.width.jump


def _pair(value: Any) -> tuple[int, int]:
    return tuple(value) if isinstance(value, tuple | list) else (value, value)


def _layer_spec(module: nn.Module) -> tuple[tuple[int, int, int, int], tuple[int, int, int, int]]:
    """(kernel, stride, dilation, left padding) for rows and for columns."""
    kernel = _pair(module.kernel_size)
    stride = _pair(module.stride if module.stride is not None else module.kernel_size)
    dilation = _pair(getattr(module, "dilation", 1))
    padding = module.padding
    if padding == "valid":
        padding = (0, 0)
    elif padding == "same":  # PyTorch puts the odd extra pixel on the right/bottom
        padding = tuple(d * (k - 1) // 2 for k, d in zip(kernel, dilation))
    padding = _pair(padding)
    return tuple((kernel[i], stride[i], dilation[i], padding[i]) for i in range(2))


class _ChainTracer(TorchFunctionMode):
    """Follows the single chain of 4-D feature maps through leaves and functional ops."""

    def __init__(self, x: torch.Tensor) -> None:
        super().__init__()
        self.current = x
        self.version = x._version
        self.layers: list[tuple[str, tuple]] = []
        self.inside_leaf = 0
        self.done = False  # reached the head
        self.failed = False

    def takes_current(self, inputs: Sequence[Any]) -> bool:
        """True when the current map is an operand, unchanged, and every other 4-D operand is a
        per-channel constant (``[., C, 1, 1]``, e.g. a normalisation mean), not another feature map."""
        others = [t for t in inputs if _is_map(t) and t is not self.current]
        current_in = any(t is self.current for t in inputs)
        return current_in and self.current._version == self.version and not others

    def advance(self, output: torch.Tensor) -> None:
        self.current, self.version = output, output._version

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.inside_leaf or self.failed:
            return func(*args, **kwargs)
        flat = [t for a in (*args, *kwargs.values()) for t in (a if isinstance(a, list | tuple) else (a,))]
        # Decide before running: an in-place op bumps the version of the map it consumes.
        takes_current = self.takes_current(flat)
        out = func(*args, **kwargs)
        if not isinstance(out, torch.Tensor) or not any(_is_map(t) for t in flat):
            return out  # metadata query, or an op on constants / per-channel vectors
        if self.done:
            if _is_map(out):
                self.fail()  # spatial work after the "head" (e.g. a squeeze-excitation gate): a branch
        elif out.dim() != 4:
            self.done = takes_current or self.fail()  # flatten / global mean: the head starts
        elif takes_current and out.shape[-2:] == self.current.shape[-2:]:
            self.advance(out)  # functional pointwise op, e.g. F.relu(x) or x * 2
        else:
            self.fail()  # a merge (x + y, cat) or a functional resize (F.max_pool2d, interpolate)
        return out

    def fail(self) -> bool:
        self.failed = True
        return False


def model_receptive_field(
    model: nn.Module, input_size: Sequence[int] | torch.Tensor
) -> ModelReceptiveField | None:
    """Compose the conv/pool layers of a plain CNN (see the module docstring for the exact rule).

    Args:
        model: the network (run once in eval mode, no grad).
        input_size: ``(C, H, W)`` or an input tensor ``[B, C, H, W]``.

    Returns:
        :class:`ModelReceptiveField`, or ``None`` when the model is not a single conv/pool chain.
    """
    x = make_input(model, input_size)
    if x.dim() != 4:
        return None
    tracer = _ChainTracer(x)
    leaves = {m: n for n, m in model.named_modules() if not any(True for _ in m.children())}

    def pre_hook(module: nn.Module, inputs: Any) -> None:
        if tracer.inside_leaf == 0 and tracer.done:
            if isinstance(module, _SPATIAL) and any(_is_map(t) for t in inputs):
                tracer.fail()  # convolutions after a global pool on a real map: not a single chain
        elif tracer.inside_leaf == 0 and not tracer.failed:
            if isinstance(module, _GLOBAL):
                tracer.done = tracer.takes_current(inputs) or tracer.fail()
            elif not tracer.takes_current(inputs):
                tracer.fail()
        tracer.inside_leaf += 1

    def post_hook(module: nn.Module, inputs: Any, output: Any) -> None:
        tracer.inside_leaf -= 1
        if tracer.inside_leaf or tracer.done or tracer.failed:
            return
        if not isinstance(output, torch.Tensor) or output.dim() != 4:
            tracer.done = True  # e.g. a custom flatten module: the head starts here
        elif isinstance(module, _SPATIAL):
            tracer.layers.append((leaves[module], _layer_spec(module)))
            tracer.advance(output)
        elif output.shape[-2:] == inputs[0].shape[-2:]:
            tracer.advance(output)
        else:
            tracer.fail()  # resizes without being a conv/pool: upsampling, transposed conv, ...

    handles = [h for m in leaves for h in (m.register_forward_pre_hook(pre_hook), m.register_forward_hook(post_hook))]
    try:
        with evaluation(model), tracer:
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    if tracer.failed or not tracer.layers:
        return None
    names = tuple(name for name, _ in tracer.layers)
    return ModelReceptiveField(
        receptive_field([spec[0] for _, spec in tracer.layers]),
        receptive_field([spec[1] for _, spec in tracer.layers]),
        names,
    )


def empirical_receptive_field(
    module: nn.Module, input_size: Sequence[int], trials: int = 4, seed: int = 0
) -> tuple[int, int]:
    """Measure the receptive field of the centre output unit from input gradients.

    Back-propagates the sum over channels of the centre unit of the ``[B, C, H', W']`` output and
    returns the height and width of the bounding box of input pixels with a non-zero gradient, united
    over ``trials`` random inputs (one input sees only the max-pool winners and live ReLUs). Runs in
    float64 (the module is cast temporarily and cast back to its first parameter's dtype afterwards).
    Make ``input_size`` large enough that the field is not clipped by the border.

    Returns:
        ``(height, width)`` in input pixels.
    """
    generator = torch.Generator().manual_seed(seed)
    was_training = module.training
    module = module.eval()
    param = next(iter(module.parameters()), None)
    dtype_before = param.dtype if param is not None else None
    module.double()
    mask = torch.zeros(tuple(input_size)[-2:], dtype=torch.bool)
    try:
        for _ in range(trials):
            x = torch.randn((1, *input_size), generator=generator, dtype=torch.float64, requires_grad=True)
            out = module(x)
            if not isinstance(out, torch.Tensor) or out.dim() != 4:
                raise ValueError(f"empirical_receptive_field needs a [B, C, H, W] output, got {_describe(out)}")
            out[0, :, out.shape[2] // 2, out.shape[3] // 2].sum().backward()
            mask |= (x.grad[0] != 0).any(dim=0)
    finally:
        if dtype_before is not None:
            module.to(dtype_before)
        module.train(was_training)
    rows = torch.nonzero(mask.any(dim=1)).flatten()
    cols = torch.nonzero(mask.any(dim=0)).flatten()
    if len(rows) == 0:
        return 0, 0
    return int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)


def _is_map(value: Any) -> bool:
    """A 4-D tensor with more than one spatial position (a feature map, not a per-channel vector)."""
    return isinstance(value, torch.Tensor) and value.dim() == 4 and value.shape[-2] * value.shape[-1] > 1


def _describe(value: Any) -> str:
    return f"shape {tuple(value.shape)}" if isinstance(value, torch.Tensor) else type(value).__name__
