"""Run an exported ONNX file with onnxruntime (an optional extra: ``pip install cvzoo[export]``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


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


class OnnxTorchModel:
    """An ONNX file called like a torch model: ``[B, C, H, W]`` tensor in; the one output as a tensor,
    or several outputs as a dict by output name (e.g. the padded detections of ``cvzoo export --nms``).

    The tasks' predict code then runs an exported graph the way it runs a model; ``metadata`` is the
    file's custom metadata (the settings an export recorded).
    """

    def __init__(self, path: str | Path, threads: int = 0) -> None:
        self.runner = OnnxRuntimeModel(path, threads)
        self.metadata = self.runner.metadata
        self.output_names = self.runner.output_names

    def __call__(self, images: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        outputs = [torch.from_numpy(o) for o in self.runner(images.detach().cpu().float().numpy())]
        return outputs[0] if len(outputs) == 1 else dict(zip(self.output_names, outputs))
