"""Export to ONNX / TorchScript and run exported files (onnxruntime backend)."""

from cvzoo.export.onnx import export_onnx
from cvzoo.export.runtime import OnnxRuntimeModel, OnnxTorchModel
from cvzoo.export.torchscript import export_torchscript

__all__ = ["OnnxRuntimeModel", "OnnxTorchModel", "export_onnx", "export_torchscript"]
