"""Run exported files: ONNX in onnxruntime (``pip install cvzoo[export]``), OpenVINO IR in OpenVINO
(``pip install cvzoo[openvino]``), TorchScript in libtorch.

Every runtime model is called like a torch model (``[B, C, H, W]`` tensor in; the one output as a tensor,
several as a dict by output name) and carries the file's ``metadata`` (the settings ``cvzoo export``
recorded: task, config, class names, NMS settings, source checkpoint). None of them is an ``nn.Module``,
which is how the tasks tell an exported graph (fixed input size, decoding or NMS inside) from a model.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np
import torch

# The format of an exported file, from its name; ``--backend`` names the runtime that runs each one.
BACKEND_OF_SUFFIX = {".onnx": "onnxruntime", ".xml": "openvino", ".torchscript": "torchscript"}


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


class ExportedModel(ABC):
    """An exported graph called like a torch model in eval mode. Subclasses set ``metadata`` and
    ``output_names`` and implement ``run(images ndarray) -> list of output arrays``.

    ``eval()`` / ``training`` let the validation loop treat it as a model; it cannot train.
    """

    training = False
    metadata: dict[str, str]
    output_names: list[str]

    @abstractmethod
    def run(self, images: np.ndarray) -> list[np.ndarray]:
        """The graph's outputs for ``images`` ``[B, C, H, W]`` float32."""

    def __call__(self, images: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        arrays = self.run(np.ascontiguousarray(images.detach().cpu().float().numpy()))
        outputs = [torch.from_numpy(np.asarray(o)) for o in arrays]
        return outputs[0] if len(outputs) == 1 else dict(zip(self.output_names, outputs))

    def eval(self) -> ExportedModel:
        return self

    def train(self, mode: bool = True) -> ExportedModel:
        if mode:
            raise RuntimeError(f"{type(self).__name__} runs an exported graph; it cannot be trained")
        return self


class OnnxTorchModel(ExportedModel):
    """An ONNX file in onnxruntime (e.g. the padded detections of ``cvzoo export --nms`` come back as a
    dict by output name)."""

    def __init__(self, path: str | Path, threads: int = 0) -> None:
        self.runner = OnnxRuntimeModel(path, threads)
        self.metadata = self.runner.metadata
        self.output_names = self.runner.output_names

    def run(self, images: np.ndarray) -> list[np.ndarray]:
        return self.runner(images)


class TorchScriptModel(ExportedModel):
    """A ``.torchscript`` file ``cvzoo export`` wrote (metadata in its ``extra/metadata.json``)."""

    def __init__(self, path: str | Path, threads: int = 0) -> None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"TorchScript file not found: {path}")
        files = {METADATA_FILE: ""}
        self.module = torch.jit.load(str(path), map_location="cpu", _extra_files=files)
        self.metadata = json.loads(files[METADATA_FILE]) if files[METADATA_FILE] else {}
        self.output_names = json.loads(self.metadata.get(OUTPUT_NAMES_KEY, '["output"]'))
        self.threads = threads

    def run(self, images: np.ndarray) -> list[np.ndarray]:
        saved = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(self.threads)
        try:
            with torch.inference_mode():
                outputs = self.module(torch.from_numpy(images))
        finally:
            torch.set_num_threads(saved)
        outputs = outputs if isinstance(outputs, (tuple, list)) else [outputs]
        return [o.numpy() for o in outputs]


# Where ``export_torchscript`` keeps the metadata inside the archive, and the key naming its outputs.
METADATA_FILE = "metadata.json"
OUTPUT_NAMES_KEY = "cvzoo_output_names"


def load_runtime(path: str | Path, threads: int = 0) -> ExportedModel:
    """The runtime model of an exported file, by its suffix (``.onnx``, ``.xml``, ``.torchscript``)."""
    suffix = Path(path).suffix.lower()
    if suffix == ".onnx":
        return OnnxTorchModel(path, threads)
    if suffix == ".xml":
        from cvzoo.export.openvino import OpenVinoModel

        return OpenVinoModel(path, threads)
    if suffix == ".torchscript":
        return TorchScriptModel(path, threads)
    raise ValueError(f"{path}: not an exported file cvzoo runs (suffix {suffix!r}; expected one of "
                     f"{', '.join(BACKEND_OF_SUFFIX)})")
