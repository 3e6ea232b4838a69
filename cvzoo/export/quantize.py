"""Post-training int8 quantisation of an exported ONNX graph with ONNX Runtime's static quantiser.

Static (not dynamic) quantisation: the activation ranges are measured once on calibration images and
fixed in the graph, so that every convolution runs as an int8 kernel without computing ranges at run
time (ONNX Runtime, "Quantize ONNX models"; Jacob et al., 2018, "Quantization and Training of Neural
Networks for Efficient Integer-Arithmetic-Only Inference"). The calibration images are the task's own
(``Task.calibration_images``: training images with eval transforms), N of them.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import torch

# Only the compute-heavy operators get int8 kernels. Quantising every tensor (the decoded boxes and class
# scores of a detector, the softmax of attention) costs accuracy and no time: those ops are cheap.
QUANTIZED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def calibration_arrays(images: Iterable[torch.Tensor | np.ndarray], channels: int | None,
                       source: str) -> list[np.ndarray]:
    """``images`` as float32 ``[1, C, H, W]`` arrays, checked: a clear error when there are none or when
    their channel count is not the model's ``channels`` (None: not fixed by the graph)."""
    arrays = []
    for index, image in enumerate(images):
        array = np.ascontiguousarray(image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else image,
                                     dtype=np.float32)
        if array.ndim == 3:
            array = array[None]
        if array.ndim != 4 or (channels is not None and array.shape[1] != channels):
            raise ValueError(f"calibration image {index} of {source} has shape {list(array.shape)}; the model takes "
                             f"[B, {channels}, H, W] ({channels}-channel images)")
        arrays.append(array)
    if not arrays:
        raise ValueError(f"the calibration set ({source}) is empty: int8 quantisation needs images to measure "
                         "activation ranges on")
    return arrays


def require_quantization() -> None:
    if importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnx") is None:
        raise ImportError("ONNX int8 quantisation needs onnxruntime and onnx: pip install 'cvzoo[export]'")


def _input_channels(model: object) -> int | None:
    dims = model.graph.input[0].type.tensor_type.shape.dim  # type: ignore[attr-defined]
    return dims[1].dim_value if len(dims) == 4 and dims[1].HasField("dim_value") else None


def quantize_onnx(source: str | Path, path: str | Path, images: Iterable[torch.Tensor | np.ndarray],
                  calibration_source: str = "calibration images", metadata: Mapping[str, str] | None = None) -> Path:
    """Write the int8 version of ONNX file ``source`` to ``path``, calibrated on ``images``.

    QDQ format (QuantizeLinear/DequantizeLinear pairs around each quantised op, which ONNX Runtime fuses
    into int8 kernels), weights int8 per output channel, activations uint8 with min-max ranges.
    ``source``'s metadata is kept and ``metadata`` added (``cvzoo_precision`` = ``int8``).
    """
    require_quantization()
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    from cvzoo.export.onnx import read_metadata, write_metadata

    source, path = Path(source), Path(path)
    graph = onnx.load(str(source), load_external_data=False)
    arrays = calibration_arrays(images, _input_channels(graph), calibration_source)
    input_name = graph.graph.input[0].name

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.remaining = iter(arrays)

        def get_next(self) -> dict[str, np.ndarray] | None:
            array = next(self.remaining, None)
            return None if array is None else {input_name: array}

    path.parent.mkdir(parents=True, exist_ok=True)
    quantize_static(str(source), str(path), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    op_types_to_quantize=list(QUANTIZED_OPS), calibrate_method=CalibrationMethod.MinMax)
    write_metadata(path, {**read_metadata(source), **(metadata or {}), PRECISION: "int8"})
    return path


PRECISION = "cvzoo_precision"  # metadata key: "int8" for a quantised file (absent: float32)
