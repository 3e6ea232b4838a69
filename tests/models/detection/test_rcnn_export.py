"""ONNX export of the R-CNNs (``FasterRCNN.export_module``): one image of any size in, its final detections
out. The graph is traced at one size and run by onnxruntime at two others; it must give PyTorch's
detections (``model.predict``) there.

The models have random weights whose batch-norm statistics are those of their own activations on a
random image (so the features stay of order one, as a trained network's do: with the statistics of
initialisation they grow to hundreds through ResNet-50, where float32 rounding differences between the
runtimes' convolutions, about 1e-6 relative, move boxes by a tenth of a pixel), and a sharpened
classifier, so that the detections are many and distinct.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from cvzoo.models import create_model

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

TRACE_SIZE = (200, 240)
# onnxruntime's convolutions round differently from PyTorch's, and after ResNet-50 + FPN + two heads the
# boxes differ by up to ~3e-3 pixels and the scores by ~4e-5 on these images: the noise floor of the
# float32 kernels, since PyTorch against itself (the backbone channels-last instead of contiguous) differs
# as much (3.4e-3 pixels, 6e-5). The tolerances are about three times that; labels are exact. A mask
# pixel follows its box and its logits: up to ~3e-3 where the random mask head is steep.
ATOL = {"boxes": 1e-2, "scores": 2e-4, "masks": 1e-2}
SIZES = [(320, 400), (256, 352)]  # neither the tracing size nor each other's aspect ratio
# Small images and 100 proposals keep the tests fast. The score threshold and detections_per_img leave
# every detection above the threshold: a cut at the Nth would compare the order of near-tied scores,
# which two runtimes may break differently (a classifier sharpened into saturation ties scores at 1.0).
SMALL = {"min_size": 160, "max_size": 256, "rpn_post_nms_top_n_test": 100, "box_score_thresh": 0.3,
         "box_detections_per_img": 500}


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


@torch.no_grad()
def calibrated_rcnn(name: str, sharpen: float, seed: int = 0, **kwargs) -> nn.Module:
    """``name`` with random weights, each batch norm's statistics set from its input on a random image (in
    one pass: a pre-hook sets them before the layer normalises), the classifier's weights times ``sharpen``."""
    torch.manual_seed(seed)
    model = create_model(name, num_classes=5, **SMALL, **kwargs).eval()

    def calibrate(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        x = inputs[0].transpose(0, 1).flatten(1)
        module.running_mean.copy_(x.mean(1))
        module.running_var.copy_(x.var(1))

    hooks = [m.register_forward_pre_hook(calibrate) for m in model.modules() if hasattr(m, "running_var")]
    model.predict(torch.rand(1, 3, *TRACE_SIZE, generator=torch.Generator().manual_seed(seed + 1)))
    for hook in hooks:
        hook.remove()
    model.roi_heads.box_predictor.cls_score.weight.mul_(sharpen)
    return model


def export(module: nn.Module, path) -> ort.InferenceSession:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's warnings on shape checks and constant strides
        torch.onnx.export(module, (torch.rand(1, 3, *TRACE_SIZE),), str(path), input_names=["images"],
                          output_names=list(module.output_names), dynamic_axes=module.dynamic_axes,
                          opset_version=17, dynamo=False)
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def check_parity(model: nn.Module, path) -> dict[str, float]:
    """Export ``model`` and compare onnxruntime with ``model.predict`` at :data:`SIZES`; the worst absolute
    differences per output."""
    module = model.export_module().eval()
    session = export(module, path)
    generator = torch.Generator().manual_seed(7)
    worst: dict[str, float] = {}
    for height, width in SIZES:
        image = torch.rand(1, 3, height, width, generator=generator)
        with torch.no_grad():
            expected = module(image)
            reference = model.predict(image)[0]
        torch.testing.assert_close(expected[0], reference.boxes, rtol=0, atol=0)  # the wrapper is predict
        got = session.run(None, {"images": image.numpy()})
        assert 5 < len(expected[0]) < 500, "the comparison needs detections, and not the cut"
        for name, a, b in zip(module.output_names, expected, got):
            assert tuple(a.shape) == b.shape, f"{name} at {height}x{width}: {tuple(a.shape)} vs {b.shape}"
            assert b.dtype == a.numpy().dtype, name
            if name == "labels":
                np.testing.assert_array_equal(b, a.numpy())
            else:
                np.testing.assert_allclose(b, a.numpy(), rtol=0, atol=ATOL[name], err_msg=name)
            diff = float(np.abs(a.numpy().astype(np.float64) - b).max()) if b.size else 0.0
            worst[name] = max(worst.get(name, 0.0), diff)
        assert got[0].shape[0] != 0 and (got[0][:, 2] <= width).all() and (got[0][:, 3] <= height).all()
    return worst


def test_mobilenet_320_exports_for_any_image_size(tmp_path):
    model = calibrated_rcnn("fasterrcnn_mobilenet_v3_large_320_fpn", sharpen=10.0)
    worst = check_parity(model, tmp_path / "mobile.onnx")
    assert set(worst) == {"boxes", "scores", "labels"}


@pytest.mark.slow
def test_faster_rcnn_resnet50_exports_for_any_image_size(tmp_path):
    check_parity(calibrated_rcnn("fasterrcnn_resnet50_fpn", sharpen=1.0), tmp_path / "faster.onnx")


@pytest.mark.slow
def test_mask_rcnn_exports_pasted_masks_for_any_image_size(tmp_path):
    model = calibrated_rcnn("maskrcnn_resnet50_fpn", sharpen=1.0)
    worst = check_parity(model, tmp_path / "mask.onnx")
    assert set(worst) == {"boxes", "scores", "labels", "masks"}


def test_the_traced_mask_paste_matches_the_eager_one():
    from cvzoo.models.detection.rcnn.mask_head import paste_masks, traced_paste_masks

    generator = torch.Generator().manual_seed(0)
    masks = torch.rand(40, 28, 28, generator=generator)
    corner = torch.rand(40, 2, generator=generator) * torch.tensor([120.0, 90.0]) - 10  # some cross the border
    boxes = torch.cat((corner, corner + torch.rand(40, 2, generator=generator) * 60 + 0.2), dim=1)
    boxes[0] = torch.tensor([30.0, 30.0, 10.0, 10.0])  # inverted: pastes nothing
    expected = paste_masks(masks, boxes, (90, 120))
    torch.testing.assert_close(traced_paste_masks(masks, boxes, (90, 120)), expected, rtol=0, atol=1e-5)
    assert not expected[0].any()
