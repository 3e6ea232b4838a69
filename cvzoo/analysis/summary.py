"""Per-layer model summary (output shapes, parameters, MACs) collected with forward hooks.

Works on any ``nn.Module``: outputs may be tensors or nested lists/tuples/dicts of tensors. MACs are
attributed to each module call as the increase of a running ``FlopCounterMode`` total between the
module's pre-hook and post-hook, so a module called twice gets each call's cost on its own row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from cvzoo.analysis.flops import evaluation, make_input

__all__ = ["LayerRow", "ModelSummary", "format_shape", "format_summary", "model_summary"]


@dataclass(frozen=True)
class LayerRow:
    """One module call.

    Attributes:
        name: qualified module name (``"layer1.0.conv1"``).
        type: class name.
        output_shape: shape tuple for a tensor output, or a list/tuple/dict of them (nested like the output).
        params: parameters owned by the module and its children (0 on a repeated call of a shared module).
        trainable: how many of ``params`` require gradients.
        macs: multiply-accumulates of this call, children included.
        depth: nesting depth (1 for direct children of the model).
        repeat: True when the module was already called earlier in the pass.
    """

    name: str
    type: str
    output_shape: Any
    params: int
    trainable: int
    macs: int
    depth: int
    repeat: bool = False


class ModelSummary(list):
    """``list[LayerRow]`` plus model-wide totals (set by :func:`model_summary`)."""

    total_params: int = 0
    trainable_params: int = 0
    total_macs: int = 0
    input_bytes: int = 0
    activation_bytes: int = 0
    param_bytes: int = 0
    output_shape: Any = None


def _shape_of(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return tuple(value.shape)
    if isinstance(value, dict):
        return {k: _shape_of(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape_of(v) for v in value]
    if isinstance(value, tuple):  # named tuples become plain tuples
        return tuple(_shape_of(v) for v in value)
    return None


def _tensor_bytes(value: Any) -> int:
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, dict):
        return sum(_tensor_bytes(v) for v in value.values())
    if isinstance(value, list | tuple):
        return sum(_tensor_bytes(v) for v in value)
    return 0


def format_shape(shape: Any) -> str:
    """``(1, 64, 56, 56) -> "[1, 64, 56, 56]"``; nested containers are rendered recursively."""
    if shape is None:
        return "-"
    if isinstance(shape, dict):
        return "{" + ", ".join(f"{k}: {format_shape(v)}" for k, v in shape.items()) + "}"
    if isinstance(shape, tuple) and all(isinstance(v, int) for v in shape):
        return "[" + ", ".join(str(v) for v in shape) + "]"
    return "[" + ", ".join(format_shape(v) for v in shape) + "]"


def model_summary(
    model: nn.Module, input_size: Sequence[int] | torch.Tensor, depth: int = 3, batch_size: int = 1
) -> ModelSummary:
    """Run one forward pass (eval mode, no grad) and describe every module call down to ``depth``.

    Args:
        model: any module taking one tensor.
        input_size: ``(C, H, W)`` without the batch dimension, or an input tensor.
        depth: deepest nesting level listed (modules below it are folded into their ancestors).
        batch_size: batch size of the generated input.

    Returns:
        :class:`ModelSummary`: rows in call order plus totals (params counted once per parameter).
    """
    from torch.utils.flop_counter import FlopCounterMode

    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    x = make_input(model, input_size, batch_size)
    names = {module: name for name, module in model.named_modules() if name}
    seen: set[nn.Module] = set()
    starts: dict[nn.Module, list[tuple[int, float]]] = {}
    records: list[dict[str, Any]] = []
    activation = [0]
    counter = FlopCounterMode(display=False)

    def pre_hook(module: nn.Module, _inputs: Any) -> None:
        slot = len(records)
        records.append({})  # reserve the row in call order; filled when the call returns
        starts.setdefault(module, []).append((slot, counter.get_total_flops()))

    def post_hook(module: nn.Module, _inputs: Any, output: Any) -> None:
        slot, flops_before = starts[module].pop()
        name = names[module]
        params = list(module.parameters())
        repeat = module in seen
        seen.add(module)
        if not any(True for _ in module.children()):
            activation[0] += _tensor_bytes(output)
        records[slot] = {
            "name": name,
            "type": type(module).__name__,
            "output_shape": _shape_of(output),
            "params": 0 if repeat else sum(p.numel() for p in params),
            "trainable": 0 if repeat else sum(p.numel() for p in params if p.requires_grad),
            "macs": int(counter.get_total_flops() - flops_before) // 2,
            "depth": name.count(".") + 1,
            "repeat": repeat,
        }

    handles = []
    for module in names:
        handles.append(module.register_forward_pre_hook(pre_hook))
        handles.append(module.register_forward_hook(post_hook))
    try:
        with evaluation(model), counter:
            output = model(x)
    finally:
        for handle in handles:
            handle.remove()
    rows = ModelSummary(LayerRow(**r) for r in records if r and r["depth"] <= depth)
    unique = {id(p): p for p in model.parameters()}.values()
    rows.total_params = sum(p.numel() for p in unique)
    rows.trainable_params = sum(p.numel() for p in unique if p.requires_grad)
    rows.total_macs = int(counter.get_total_flops()) // 2
    rows.input_bytes = _tensor_bytes(x)
    rows.activation_bytes = activation[0]
    rows.param_bytes = sum(p.numel() * p.element_size() for p in unique)
    rows.output_shape = _shape_of(output)
    return rows


def _human(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(int(n))


def format_summary(rows: Sequence[LayerRow], title: str | None = None) -> str:
    """A torchsummary-like table with totals.

    Totals come from a :class:`ModelSummary`; for a plain row list they are summed over the
    shallowest rows (repeated calls contribute MACs but no parameters).
    """
    summary_like = isinstance(rows, ModelSummary)
    top = min((r.depth for r in rows), default=1)
    total = rows.total_params if summary_like else sum(r.params for r in rows if r.depth == top)
    trainable = rows.trainable_params if summary_like else sum(r.trainable for r in rows if r.depth == top)
    macs = rows.total_macs if summary_like else sum(r.macs for r in rows if r.depth == top)
    table = [
        (("  " * (r.depth - top)) + f"{r.name} ({r.type})" + (" *" if r.repeat else ""),
         format_shape(r.output_shape), f"{r.params:,}", _human(r.macs) if r.macs else "--")
        for r in rows
    ]
    header = ("Layer (type)", "Output Shape", "Param #", "MACs")
    widths = [max(len(header[i]), *(len(t[i]) for t in table)) if table else len(header[i]) for i in range(4)]
    line = "  ".join(h.ljust(w) if i < 2 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths)))
    rule = "=" * len(line)
    out = [title] if title else []
    out += [rule, line, rule]
    out += ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(t, widths))) for t in table]
    out.append(rule)
    out.append(f"Total params: {total:,}")
    out.append(f"Trainable params: {trainable:,}")
    out.append(f"Non-trainable params: {total - trainable:,}")
    out.append(f"Total MACs: {_human(macs)} ({macs / 1e9:.3f} GMACs = {2 * macs / 1e9:.3f} GFLOPs)")
    if summary_like:
        mb = 1024**2
        out.append(f"Output shape: {format_shape(rows.output_shape)}")
        out.append(f"Input size (MB): {rows.input_bytes / mb:.2f}")
        out.append(f"Forward pass activations (MB): {rows.activation_bytes / mb:.2f}")
        out.append(f"Params size (MB): {rows.param_bytes / mb:.2f}")
        est = rows.input_bytes + rows.activation_bytes + rows.param_bytes
        out.append(f"Estimated total size (MB): {est / mb:.2f}")
    if any(r.repeat for r in rows):
        out.append("* repeated call of a shared module (its parameters are counted once)")
    out.append(rule)
    return "\n".join(out)
