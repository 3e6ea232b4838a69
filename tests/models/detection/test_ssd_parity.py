"""SSD300 and SSDlite320 against torchvision: a torchvision state dict loads through the remap picked by
``remap="auto"``, and with the same weights the detections (eval, two images of different sizes) and the
training losses (a batch with a negative image) agree.

torchvision's models are built as its builders build them without pretrained weights, with random weights
whose batch-norm statistics are spread and whose class predictors are sharpened, so that the detections are
many and distinct.
"""

from __future__ import annotations

import pytest
import torch

from cvzoo.models import create_model
from cvzoo.models.weights import load_weights

tv_detection = pytest.importorskip("torchvision.models.detection")

NUM_CLASSES = 4  # ours; torchvision's heads have NUM_CLASSES + 1 rows with 0 = background
SIZES = [(200, 260), (330, 240)]


@pytest.fixture(autouse=True)
def _threads(one_thread):
    yield


def torchvision_model(name: str) -> torch.nn.Module:
    """torchvision's ``name`` without pretrained weights. SSD300's VGG is assembled as ``ssd300_vgg16`` does,
    without initialising the 120 M classifier parameters it drops."""
    if name == "ssdlite320_mobilenet_v3_large":
        return tv_detection.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None,
                                                          num_classes=NUM_CLASSES + 1)
    from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
    from torchvision.models.detection.ssd import SSD, _vgg_extractor
    from torchvision.models.vgg import VGG, cfgs, make_layers

    backbone = _vgg_extractor(VGG(make_layers(cfgs["D"]), init_weights=False), False, 5)
    boxes = DefaultBoxGenerator([[2], [2, 3], [2, 3], [2, 3], [2], [2]],
                                scales=[0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05], steps=[8, 16, 32, 64, 100, 300])
    return SSD(backbone, boxes, (300, 300), NUM_CLASSES + 1, image_mean=[0.48235, 0.45882, 0.40784],
               image_std=[1.0 / 255.0] * 3)


@torch.no_grad()
def randomise(model: torch.nn.Module, seed: int, sharpen: float = 5.0) -> None:
    generator = torch.Generator().manual_seed(seed)
    for name, tensor in model.state_dict().items():
        if name.endswith("running_var"):
            tensor.copy_(0.5 + torch.rand(tensor.shape, generator=generator))
        elif name.endswith("running_mean"):
            tensor.copy_(0.1 * torch.randn(tensor.shape, generator=generator))
    for module in model.head.classification_head.modules():
        if isinstance(module, torch.nn.Conv2d) and module.groups == 1:
            module.weight.mul_(sharpen)


@pytest.fixture(scope="module", params=["ssd300_vgg16", "ssdlite320_mobilenet_v3_large"])
def pair(request):
    torch.manual_seed(0)
    reference = torchvision_model(request.param)
    randomise(reference, seed=1)
    ours = create_model(request.param, num_classes=NUM_CLASSES)
    report = load_weights(ours, reference.state_dict())  # remap="auto"
    assert report.remap == "torchvision:ssd"
    assert not report.missing and not report.unexpected
    return reference, ours


def _images() -> tuple[list[torch.Tensor], torch.Tensor]:
    generator = torch.Generator().manual_seed(2)
    images = [torch.rand(3, h, w, generator=generator) for h, w in SIZES]
    batch = torch.zeros(len(images), 3, max(h for h, _ in SIZES), max(w for _, w in SIZES))
    for out, image in zip(batch, images):
        out[:, : image.shape[1], : image.shape[2]] = image
    return images, batch


def test_detections_are_torchvisions(pair):
    reference, ours = pair
    images, batch = _images()
    reference.eval()
    ours.eval()
    with torch.no_grad():
        expected = reference(images)
        got = ours.predict(batch, SIZES)
    for e, g in zip(expected, got):
        assert len(g) == len(e["boxes"]) > 10
        torch.testing.assert_close(g.boxes, e["boxes"], rtol=0, atol=1e-4)
        torch.testing.assert_close(g.scores, e["scores"], rtol=0, atol=1e-4)
        assert torch.equal(g.labels, e["labels"] - 1)


def test_training_losses_are_torchvisions(pair):
    reference, ours = pair
    images, batch = _images()
    targets = [{"boxes": torch.tensor([[10.0, 20.0, 120.0, 150.0], [50.0, 60.0, 70.0, 90.0], [0.0, 0.0, 260.0, 200.0]]),
                "labels": torch.tensor([0, 3, 1])},
               {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}]  # a negative image
    reference.train()
    ours.train()
    expected = reference(images, [{"boxes": t["boxes"], "labels": t["labels"] + 1} for t in targets])
    got = ours(batch, targets, SIZES)
    for key in ("bbox_regression", "classification"):
        torch.testing.assert_close(got[key], expected[key].detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got["loss"], sum(expected.values()), rtol=1e-5, atol=1e-5)
