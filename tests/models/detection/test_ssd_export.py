"""The ONNX path of SSD (one image of any size in, its final detections out), traced at one size and run by
onnxruntime at two others, against ``model.predict``.

The models are not declared ``exportable`` yet (see docs/ssd.md): randomly initialised SSDs score every box
alike (SSDlite exactly 1 / (K + 1), SSD300 saturated at 1.0), so the contract's comparison of all detections
would compare the order of exact ties. Here the weights are calibrated as in ``test_rcnn_export.py`` (batch-norm
statistics from the layers' own inputs on a random image, a sharpened class predictor) and the score
threshold keeps every detection above it, so neither the per-class top-k nor the final count cuts a tie.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from cvzoo.models import create_model
from cvzoo.models.detection.base import Detections
from cvzoo.models.detection.graph_nms import detections_difference
from cvzoo.models.detection.rcnn.faster_rcnn import RCNNExport

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

TRACE_SIZE = (200, 240)
SIZES = [(256, 352), (300, 180)]


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


@torch.no_grad()
def calibrated_ssdlite(sharpen: float = 2.0, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = create_model("ssdlite320_mobilenet_v3_large", num_classes=3, score_thresh=0.8, topk_candidates=3000,
                         detections_per_img=3000).eval()

    def calibrate(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        x = inputs[0].transpose(0, 1).flatten(1)
        module.running_mean.copy_(x.mean(1))
        module.running_var.copy_(x.var(1))

    hooks = [m.register_forward_pre_hook(calibrate) for m in model.modules() if hasattr(m, "running_var")]
    # Two images: the 1 x 1 maps need two values per channel for a variance.
    model.predict(torch.rand(2, 3, *TRACE_SIZE, generator=torch.Generator().manual_seed(seed + 1)))
    for hook in hooks:
        hook.remove()
    for predictor in model.head.classification:
        predictor[-1].weight.mul_(sharpen)
    return model


def test_ssdlite_graph_gives_predicts_detections_at_any_size(tmp_path):
    model = calibrated_ssdlite()
    module = RCNNExport(model).eval()
    path = tmp_path / "ssdlite.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's warnings on shape checks
        torch.onnx.export(module, (torch.rand(1, 3, *TRACE_SIZE),), str(path), input_names=["images"],
                          output_names=list(module.output_names), dynamic_axes=module.dynamic_axes, opset_version=17,
                          dynamo=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(7)
    for height, width in SIZES:
        image = torch.rand(1, 3, height, width, generator=generator)
        with torch.no_grad():
            expected = model.predict(image)[0]
        boxes, scores, labels = session.run(None, {"images": image.numpy()})
        assert 5 < len(expected) < 3000, "the comparison needs detections, and no cut"
        got = Detections(torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(labels))
        assert len(got) == len(expected), (len(got), len(expected))
        box, score = detections_difference(expected, got)
        # onnxruntime's convolutions round differently from PyTorch's (~1e-6 relative).
        assert box < 1e-2 and score < 1e-4, (height, width, box, score)
        assert (boxes[:, 2] <= width).all() and (boxes[:, 3] <= height).all()
        assert np.array_equal(np.sort(labels), np.sort(expected.labels.numpy()))
