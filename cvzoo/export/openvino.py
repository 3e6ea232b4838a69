"""OpenVINO IR (``model.xml`` + ``model.bin``), float32 or int8 through NNCF post-training quantisation,
and its runtime. An optional extra: ``pip install 'cvzoo[openvino]'`` (openvino, nncf).

The IR is converted from the ONNX file ``cvzoo export`` has checked against PyTorch (with NMS inside
where it was exported so; OpenVINO has the ``NonMaxSuppression`` operator), not traced a second time,
so both formats run the same graph. The ONNX file's metadata goes into the IR's ``rt_info`` under
``cvzoo``, which is where :class:`OpenVinoModel` reads it back.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cvzoo.export.quantize import PRECISION, calibration_arrays
from cvzoo.export.runtime import ExportedModel

RT_INFO = "cvzoo"  # the rt_info section that holds the metadata


def require_openvino(*modules: str) -> None:
    """One clear error naming the packages to install when the ``openvino`` extra is missing."""
    missing = [m for m in modules or ("openvino",) if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(f"the OpenVINO format needs {', '.join(missing)}, which this environment lacks: "
                          "pip install 'cvzoo[openvino]' (openvino, nncf)")


def export_openvino(onnx_path: str | Path, path: str | Path, images: Iterable[torch.Tensor | np.ndarray] | None = None,
                    calibration_source: str = "calibration images",
                    metadata: Mapping[str, str] | None = None) -> Path:
    """Convert ONNX file ``onnx_path`` to IR ``path`` (``.xml``; weights in the ``.bin`` beside it), kept in
    float32; with ``images``, quantised to int8 by NNCF's post-training quantisation calibrated on them
    (activations and weights of the convolutions and matrix products, min-max ranges refined by NNCF's
    fast bias correction)."""
    require_openvino("openvino", *(("nncf",) if images is not None else ()))
    import openvino as ov

    from cvzoo.export.onnx import read_metadata

    onnx_path, path = Path(onnx_path), Path(path)
    model = ov.convert_model(str(onnx_path))
    entries = {**read_metadata(onnx_path), **(metadata or {})}
    if images is not None:
        import nncf

        shape = model.inputs[0].get_partial_shape()
        channels = shape[1].get_length() if shape.rank.is_static and shape[1].is_static else None
        arrays = calibration_arrays(images, channels, calibration_source)
        model = nncf.quantize(model, nncf.Dataset(arrays), subset_size=len(arrays))
        entries[PRECISION] = "int8"
    for key, value in entries.items():
        model.set_rt_info(str(value), [RT_INFO, key])
    path.parent.mkdir(parents=True, exist_ok=True)
    # float32 weights: the IR is the exported model as it is (no silent fp16 rounding).
    ov.save_model(model, str(path), compress_to_fp16=False)
    return path


class OpenVinoModel(ExportedModel):
    """An IR file in OpenVINO's CPU plugin, float32 inference precision (a CPU with bf16 units would
    otherwise run a float IR in bf16)."""

    def __init__(self, path: str | Path, threads: int = 0) -> None:
        require_openvino()
        import openvino as ov

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"OpenVINO IR not found: {path}")
        self.core = ov.Core()
        self.model = self.core.read_model(str(path))
        self.metadata = _rt_metadata(self.model)
        self.config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            self.config["INFERENCE_NUM_THREADS"] = threads
        self.output_names = [output.get_any_name() for output in self.model.outputs]
        self.dynamic = self.model.inputs[0].get_partial_shape().is_dynamic
        # Compiled per input shape. An IR with a dynamic axis (the batch of ``cvzoo export``'s graphs) runs
        # OpenVINO's dynamic-shape kernels when compiled as it is: YOLOv8n's float32 graph took 47 ms a call
        # at 160 px against 7 ms for the same graph with the shape fixed (benchmarks/bench_deploy.py). Each
        # new shape is compiled once, fixed, and kept.
        self.requests: dict[tuple[int, ...], Any] = {}
        if not self.dynamic:
            self.requests[tuple(self.model.inputs[0].get_shape())] = self._compile()

    def _compile(self) -> Any:
        return self.core.compile_model(self.model, "CPU", self.config).create_infer_request()

    def request_for(self, shape: tuple[int, ...]) -> Any:
        """The infer request of a model compiled for inputs of ``shape`` (compiled on first use)."""
        if shape not in self.requests:
            if not self.dynamic:  # one fixed shape: OpenVINO's own error names both
                return next(iter(self.requests.values()))
            import openvino as ov

            self.model.reshape({self.model.inputs[0]: ov.PartialShape(list(shape))})
            self.requests[shape] = self._compile()
        return self.requests[shape]

    def run(self, images: np.ndarray) -> list[np.ndarray]:
        request = self.request_for(tuple(images.shape))
        results = request.infer({0: images})
        return [np.array(results[output]) for output in request.model_outputs]


def _rt_metadata(model: Any) -> dict[str, str]:
    if not model.has_rt_info([RT_INFO]):
        return {}
    keys = model.get_rt_info([RT_INFO]).astype(dict)
    return {str(key): model.get_rt_info([RT_INFO, str(key)]).astype(str) for key in keys}
