"""YOLOv8n and YOLOv5n trace to ONNX (opset 17, dynamic batch) and onnxruntime reproduces its decoded predictions."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from cvzoo.models import create_model


@pytest.mark.parametrize("name, per_cell", [("yolov8n", 1), ("yolov5n", 3)])
def test_onnx_export_matches_pytorch(tmp_path, name, per_cell):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = create_model(name, num_classes=5).export_module().eval()  # images -> decoded [B, A, 4 + K]
    example = torch.rand(1, 3, 64, 64)
    path = tmp_path / f"{name}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (example,), str(path), input_names=["images"], output_names=["predictions"],
            opset_version=17, dynamic_axes={"images": {0: "batch"}, "predictions": {0: "batch"}}, dynamo=False,
        )
    onnx.checker.check_model(onnx.load(str(path)))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 3):
        images = torch.rand(batch, 3, 64, 64)
        with torch.no_grad():
            expected = model(images).numpy()
        (got,) = session.run(None, {"images": images.numpy()})
        assert got.shape == expected.shape == (batch, per_cell * (8 * 8 + 4 * 4 + 2 * 2), 4 + 5)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
