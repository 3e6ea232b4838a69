"""ONNX export of RetinaNet and FCOS (``export_module``: the R-CNN wrapper, one image of any size in, its final
detections out): traced at one size, run by onnxruntime at two others, it must give ``model.predict``'s
detections there. The models are prepared as test_rcnn_export.py prepares the R-CNNs (batch-norm statistics
of their own activations, a sharpened classifier without its 1 % prior); the score threshold leaves tens to
hundreds of detections. A random RetinaNet's scores crowd near 1, where two runtimes may order near-tied rows
differently: rows are compared after pairing them (same label, nearest box and score), as the contract does."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from cvzoo.models import create_model
from tests.models.detection.test_detector_contract import _in_order_of
from tests.models.detection.test_rcnn_export import ATOL, SIZES, TRACE_SIZE, export

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

SMALL = {"min_size": 160, "max_size": 256, "detections_per_img": 500}


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


@torch.no_grad()
def calibrated(name: str, sharpen: float, score_thresh: float, seed: int = 0) -> nn.Module:
    """``name`` with random weights, batch-norm statistics from its own input on a random image, the class
    logits' weights times ``sharpen``."""
    torch.manual_seed(seed)
    model = create_model(name, num_classes=5, score_thresh=score_thresh, **SMALL).eval()

    def calibrate(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        x = inputs[0].transpose(0, 1).flatten(1)
        module.running_mean.copy_(x.mean(1))
        module.running_var.copy_(x.var(1))

    hooks = [m.register_forward_pre_hook(calibrate) for m in model.modules() if hasattr(m, "running_var")]
    model.predict(torch.rand(1, 3, *TRACE_SIZE, generator=torch.Generator().manual_seed(seed + 1)))
    for hook in hooks:
        hook.remove()
    model.head.classification.predictions["cls_logits"].weight.mul_(sharpen)
    model.head.classification.predictions["cls_logits"].bias.zero_()  # no 1 % prior: scores spread around 0.5
    return model


@pytest.mark.slow
@pytest.mark.parametrize(("name", "sharpen", "score_thresh"), [
    ("retinanet_resnet50_fpn", 10.0, 0.65),
    ("fcos_resnet50_fpn", 1.0, 0.6),
])
def test_exports_for_any_image_size(name, sharpen, score_thresh, tmp_path):
    model = calibrated(name, sharpen, score_thresh)
    module = model.export_module().eval()
    session = export(module, tmp_path / f"{name}.onnx")
    generator = torch.Generator().manual_seed(7)
    for height, width in SIZES:
        image = torch.rand(1, 3, height, width, generator=generator)
        with torch.no_grad():
            expected = module(image)
            torch.testing.assert_close(expected[0], model.predict(image)[0].boxes, rtol=0, atol=0)
        got = session.run(None, {"images": image.numpy()})
        assert 5 < len(expected[0]) < SMALL["detections_per_img"], "the comparison needs detections, not the cut"
        assert [tuple(a.shape) for a in expected] == [b.shape for b in got]
        paired = _in_order_of(expected, got)
        np.testing.assert_array_equal(got[2], paired[2].numpy())
        np.testing.assert_allclose(got[0], paired[0].numpy(), rtol=0, atol=ATOL["boxes"])
        np.testing.assert_allclose(got[1], paired[1].numpy(), rtol=0, atol=ATOL["scores"])
