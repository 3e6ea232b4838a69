"""Run an exported ONNX file with onnxruntime (an optional extra: ``pip install cvzoo[export]``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


class OnnxRuntimeModel:
    """``OnnxRuntimeModel("model.onnx")(images [B,C,H,W] float32 ndarray) -> list of output arrays``."""

    def __init__(self, path: str | Path, threads: int = 0) -> None:
        try:
            import onnxruntime as ort
        except ImportError as err:
            raise ImportError(
                "the onnxruntime backend needs the 'onnxruntime' package: pip install 'cvzoo[export]'"
            ) from err
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"ONNX file not found: {path}")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)

    def __call__(self, images: np.ndarray) -> list[np.ndarray]:
        return self.session.run(None, {self.input_name: np.ascontiguousarray(images, dtype=np.float32)})
