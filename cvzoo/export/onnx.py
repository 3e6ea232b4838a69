"""ONNX export (torch.export-based by default, the TorchScript tracer where a model declares it) with a dynamic
batch dimension and an optional parity check in onnxruntime."""

from __future__ import annotations

import functools
import importlib.util
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn


class ExportParityError(RuntimeError):
    """The exported graph's outputs differ from PyTorch's beyond the tolerance."""


def require_export_packages(*modules: str) -> None:
    """Fail before any work, with the install command, when the ``export`` extra is missing.

    (torch.onnx alone reports "Module onnx is not installed!" deep inside the export.)
    """
    missing = [m for m in modules or ("onnx", "onnxscript") if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(
            f"ONNX export needs {', '.join(missing)}, which this environment lacks: "
            "pip install 'cvzoo[export]' (onnx, onnxscript, onnxruntime)"
        )


# The two exporters of torch.onnx. "dynamo" captures the model with torch.export and translates the ATen graph
# through onnxscript's torchlib: the exporter PyTorch maintains. "torchscript" is the tracing exporter that
# PyTorch deprecates; a model keeps it only where it declares ``onnx_exporter = "torchscript"`` on its export
# module, with the reason written there (custom ``symbolic`` functions, which only the tracer honours; shapes
# that depend on the data, which torch.export cannot express without a translation of its own).
ONNX_EXPORTERS = ("dynamo", "torchscript")
# The lowest opset each exporter writes by default: torchlib's functions are written for opset 18 (the dynamo
# exporter would convert a lower one afterwards, op by op, which fails on some ops), the tracer's zoo-wide
# tested opset is 17.
DEFAULT_OPSET = {"dynamo": 18, "torchscript": 17}


# torch.onnx.export(dynamo=True) exists from torch 2.6, but this module drives it through a private entry
# point (_export_dynamo) that was checked on torch 2.14 only, and the zoo's models were exported and compared
# with onnxruntime on that version: from 2.14 the default is dynamo; cvzoo admits torch >= 2.2, where an older
# torch keeps the tracer, which works on all of them.
DYNAMO_MIN_TORCH = (2, 14)


def _torch_version() -> tuple[int, int]:
    major, minor = torch.__version__.split(".")[:2]
    return int(major), int(minor)


def onnx_exporter_for(module: nn.Module, requested: str | None = None) -> str:
    """The exporter of ``module``: ``requested`` when given, else the module's declared ``onnx_exporter``,
    else ``"dynamo"`` (``"torchscript"`` under a torch older than ``DYNAMO_MIN_TORCH``)."""
    default = "dynamo" if _torch_version() >= DYNAMO_MIN_TORCH else "torchscript"
    choice = requested if requested is not None else getattr(module, "onnx_exporter", default)
    if choice not in ONNX_EXPORTERS:
        where = "asked for" if requested is not None else f"declared by {type(module).__name__}.onnx_exporter"
        raise ValueError(f"unknown ONNX exporter {choice!r} ({where}); use one of {', '.join(ONNX_EXPORTERS)}")
    if choice == "dynamo" and default != "dynamo":
        raise ValueError(f"cvzoo's dynamo ONNX export needs torch >= {'.'.join(map(str, DYNAMO_MIN_TORCH))}, "
                         f"this is torch {torch.__version__}: "
                         "use the torchscript exporter or a newer torch")
    return choice


def export_onnx(
    model: nn.Module,
    path: str | Path,
    example: torch.Tensor,
    input_names: Sequence[str] = ("images",),
    output_names: Sequence[str] = ("output",),
    opset: int | None = None,
    dynamic_batch: bool = True,
    dynamic_hw: bool = False,
    check: bool = True,
    atol: float = 1e-4,
    metadata: Mapping[str, str] | None = None,
    compare: Callable[[torch.Tensor, Sequence[torch.Tensor], Sequence[np.ndarray]], float] | None = None,
    dynamic_axes: Mapping[str, Mapping[int, str]] | None = None,
    exporter: str | None = None,
    optimize: bool = True,
) -> Path:
    """Export ``model`` (eval mode) to ``path``; with ``check`` run it in onnxruntime and compare.

    ``exporter`` is ``"dynamo"`` (torch.export + onnxscript, the default) or ``"torchscript"`` (the
    deprecated tracer); ``None`` takes the model's declared ``onnx_exporter`` (:func:`onnx_exporter_for`).
    ``opset`` defaults to the exporter's (:data:`DEFAULT_OPSET`); the dynamo exporter needs 18 or more.
    ``optimize`` runs onnxscript's graph optimizer (constant folding, redundant-op removal) on the dynamo
    exporter's graph: without it that graph has 2.7-3.6x the nodes of the tracer's and runs slower in
    onnxruntime; with it, fewer nodes than the tracer's (benchmarks/bench_onnx_exporters.py, docs/deploy.md).
    The torchscript exporter folds constants itself and ignores it.
    ``dynamic_batch`` marks axis 0 of every input/output as dynamic (``dynamic_hw`` also axes 2-3 of the
    inputs). ``metadata`` key/value strings are recorded in the file (onnxruntime reads them as
    ``custom_metadata_map``). ``compare(inputs, expected, got) -> difference`` replaces the element-wise
    check (e.g. for detections after NMS, where near-tied candidates may legitimately come out
    differently). ``dynamic_axes`` (``torch.onnx.export``'s, by input/output name) replaces the axes
    ``dynamic_batch`` and ``dynamic_hw`` would mark, for a graph whose axes are its own (an R-CNN: one
    image of any size in, a variable number of detections out); the check then runs the example alone.
    """
    require_export_packages()
    exporter = onnx_exporter_for(model, exporter)
    opset = DEFAULT_OPSET[exporter] if opset is None else int(opset)
    if exporter == "dynamo" and opset < DEFAULT_OPSET["dynamo"]:
        raise ValueError(f"the dynamo ONNX exporter writes opset {DEFAULT_OPSET['dynamo']} or later, got opset "
                         f"{opset}; ask for the torchscript exporter for an older opset")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    if dynamic_axes is not None:
        dynamic_axes = {name: dict(axes) for name, axes in dynamic_axes.items()}
        dynamic_batch = False
    elif dynamic_batch or dynamic_hw:
        dynamic_axes = {}
        for name in input_names:
            axes = {0: "batch"} if dynamic_batch else {}
            if dynamic_hw:
                axes.update({2: "height", 3: "width"})
            dynamic_axes[name] = axes
        for name in output_names:
            if dynamic_batch:
                dynamic_axes[name] = {0: "batch"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            _export_dynamo(model, path, example, input_names, output_names, opset, dynamic_axes or {}, optimize,
                           metadata)
        else:
            torch.onnx.export(
                model, (example,), str(path), input_names=list(input_names), output_names=list(output_names),
                opset_version=opset, dynamic_axes=dynamic_axes, dynamo=False,
            )
            if metadata:
                write_metadata(path, metadata)
    if check:
        check_onnx_parity(model, path, example, atol=atol, compare=compare,
                          batch_sizes=(example.shape[0], 2) if dynamic_batch else (example.shape[0],))
    return path


def _export_dynamo(model: nn.Module, path: Path, example: torch.Tensor, input_names: Sequence[str],
                   output_names: Sequence[str], opset: int, dynamic_axes: Mapping[str, Mapping[int, str]],
                   optimize: bool, metadata: Mapping[str, str] | None) -> None:
    """``torch.onnx.export(dynamo=True)`` of ``model`` on ``example``: torch.export capture, then ONNX.

    The input's dynamic axes become ``torch.export.Dim`` s named as in ``dynamic_axes``; the outputs' follow
    from the graph. ``metadata`` goes into the file as it is written.
    """
    if len(input_names) != 1:
        raise ValueError(f"export_onnx takes one input tensor, got input names {list(input_names)}")
    dims: dict[str, torch.export.Dim] = {}
    spec = {axis: dims.setdefault(label, torch.export.Dim(label)) for axis, label in
            dynamic_axes.get(input_names[0], {}).items()}
    for axis in spec:
        # torch.export treats an axis of size 0 or 1 in the example as a constant (a size-1 axis may be a
        # broadcast), and then refuses to make it dynamic: capture with the example doubled along it.
        if example.shape[axis] < 2:
            example = torch.cat([example, example], dim=axis)
    # What torch.onnx.export(dynamo=True) runs, less its first step: it rebuilds the registry of torchlib's
    # ONNX functions (parsing ~500 of them) on every call, 2.3 of the 3.5 s a tiny model's export takes
    # (docs/deploy.md); the registry does not change between exports of one opset, so it is built once per
    # process. ``_core.export`` is private and was checked on torch 2.14 only (the pyproject caps torch below
    # 2.15); a torch whose signature differs fails here with a TypeError, not with another exporter.
    # Given the module itself (not a program captured beforehand), torch.onnx.is_in_onnx_export() holds while
    # torch.export captures it, as the models' export branches expect.
    from torch.onnx._internal.exporter import _core

    onnx_program = _core.export(model, (example,), registry=_torchlib_registry(opset),
                                dynamic_shapes=(spec or None,), input_names=list(input_names),
                                output_names=list(output_names), optimize=optimize, opset_version=opset,
                                verbose=False)
    # The symbolic sizes come out as torch.export's symbols (s0, s77, ...): name them as asked, wherever
    # they appear (the outputs' batch axis is the input's symbol).
    shape = onnx_program.model.graph.inputs[0].shape
    onnx_program.rename_axes({shape[axis]: label for axis, label in
                              dynamic_axes.get(input_names[0], {}).items() if not isinstance(shape[axis], int)})
    onnx_program.model.metadata_props.update({key: str(value) for key, value in (metadata or {}).items()})
    # Weights inside the file (not beside it): the zoo's models are far below protobuf's 2 GB limit.
    onnx_program.save(str(path), external_data=False)


@functools.cache
def _torchlib_registry(opset: int) -> Any:
    """torch's registry of the ATen -> ONNX functions of onnxscript's torchlib at ``opset`` (built once)."""
    from torch.onnx._internal.exporter import _registration

    return _registration.ONNXRegistry.from_torchlib(opset_version=opset)


def write_metadata(path: Path, metadata: Mapping[str, str]) -> None:
    """Set ``metadata`` in the ONNX file's ``metadata_props`` (replacing entries with the same keys)."""
    try:
        import onnx
    except ImportError as err:
        raise ImportError("recording ONNX metadata needs the 'onnx' package: pip install 'cvzoo[export]'") from err
    model = onnx.load(str(path))
    kept = [(p.key, p.value) for p in model.metadata_props if p.key not in metadata]
    del model.metadata_props[:]
    for key, value in [*kept, *metadata.items()]:
        entry = model.metadata_props.add()
        entry.key, entry.value = key, str(value)
    onnx.save(model, str(path))


def read_metadata(path: str | Path) -> dict[str, str]:
    """The ``metadata_props`` of ONNX file ``path`` (the graph itself is not loaded into memory twice)."""
    try:
        import onnx
    except ImportError as err:
        raise ImportError("reading ONNX metadata needs the 'onnx' package: pip install 'cvzoo[export]'") from err
    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


def _as_tuple(outputs: object) -> tuple[torch.Tensor, ...]:
    if isinstance(outputs, torch.Tensor):
        return (outputs,)
    if isinstance(outputs, dict):
        return tuple(outputs.values())
    return tuple(outputs)  # type: ignore[arg-type]


@torch.no_grad()
def check_onnx_parity(
    model: nn.Module, path: Path, example: torch.Tensor, atol: float = 1e-4, batch_sizes: Sequence[int] = (1,),
    compare: Callable[[torch.Tensor, Sequence[torch.Tensor], Sequence[np.ndarray]], float] | None = None,
) -> float:
    """Max abs difference between PyTorch and onnxruntime over ``batch_sizes``; raises above ``atol`` times
    the output's largest magnitude (at least 1).

    The tolerance scales with the output: float32 rounding differs between runtimes by a relative amount,
    so decoded boxes in pixels differ more than probabilities do (a trained YOLOv8n at 640 px: 0.0015 px
    on boxes up to 640, where a fixed 1e-4 refused a correct graph). ``compare(inputs, expected outputs,
    onnxruntime outputs) -> difference`` replaces the per-output comparison when given.
    """
    from cvzoo.export.runtime import OnnxRuntimeModel

    runtime = OnnxRuntimeModel(path)
    worst = 0.0
    for batch in batch_sizes:
        x = example[:1].repeat(batch, *([1] * (example.ndim - 1))) if batch != example.shape[0] else example
        x = x + 0.01 * torch.randn_like(x) if batch != example.shape[0] else x
        expected = _as_tuple(model(x))
        got = runtime(x.numpy())
        if compare is not None:
            diff = compare(x, expected, got)
            worst = max(worst, diff)
            if diff > atol:
                raise ExportParityError(f"{path}: outputs differ from PyTorch by {diff:.3g} (> {atol}) at batch {batch}")
            continue
        for name, a, b in zip(runtime.output_names, expected, got):
            reference = a.float().numpy()
            diff = float(np.max(np.abs(reference - b))) if a.numel() else 0.0
            scale = max(1.0, float(np.max(np.abs(reference)))) if a.numel() else 1.0
            worst = max(worst, diff)
            if diff > atol * scale:
                raise ExportParityError(
                    f"{path}: output {name!r} differs from PyTorch by {diff:.3g} (> {atol} x its largest "
                    f"magnitude {scale:.3g}) at batch {batch}"
                )
    return worst
