"""RetinaNet (v1, v2) and FCOS against torchvision: a torchvision state dict loads through the remap
(``remap="auto"``), and with the same weights the detections (eval) and the training losses agree.

torchvision's models are built with random weights (``weights=None``) as its builders build them for
fine-tuning where they freeze batch norm (v1, FCOS: frozen batch norm, so that training uses the stored
statistics), with spread batch-norm statistics and a sharpened classifier, so that the detections are many
and distinct.
"""

from __future__ import annotations

import pytest
import torch

from cvzoo.models import create_model
from cvzoo.models.weights import load_weights

tv_detection = pytest.importorskip("torchvision.models.detection")

MIN_SIZE, MAX_SIZE = 128, 192
SIZES = [(96, 128), (80, 72)]  # two images of different sizes, the second padded into the batch
MODELS = ["retinanet_resnet50_fpn", "retinanet_resnet50_fpn_v2", "fcos_resnet50_fpn"]


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def torchvision_model(name: str) -> torch.nn.Module:
    """torchvision's ``name`` with random weights, num_classes 91; frozen batch norm where its builder freezes
    it for trained weights (v1, FCOS; v2 keeps a live batch norm)."""
    from torchvision.models import resnet50
    from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
    from torchvision.ops.feature_pyramid_network import LastLevelP6P7
    from torchvision.ops.misc import FrozenBatchNorm2d

    kwargs = {"min_size": MIN_SIZE, "max_size": MAX_SIZE}
    if name.endswith("_v2"):
        return getattr(tv_detection, name)(weights=None, weights_backbone=None, num_classes=91, **kwargs)
    backbone = _resnet_fpn_extractor(resnet50(norm_layer=FrozenBatchNorm2d), 3, returned_layers=[2, 3, 4],
                                     extra_blocks=LastLevelP6P7(256, 256))
    family = tv_detection.RetinaNet if name.startswith("retinanet") else tv_detection.FCOS
    return family(backbone, 91, **kwargs)


# Per model, the factors of the class-logit and box-offset weights that give distinct scores in (0.05, 1)
# (saturated scores would tie) and boxes of many sizes.
SHARPEN = {"retinanet_resnet50_fpn": (1.0, 0.3), "retinanet_resnet50_fpn_v2": (3.0, 3.0),
           "fcos_resnet50_fpn": (3.0, 10.0)}


@torch.no_grad()
def randomise(model: torch.nn.Module, seed: int, sharpen: tuple[float, float]) -> None:
    """Spread the batch-norm statistics and the head's biases / GroupNorm affines, scale the class-logit and
    box-offset weights by ``sharpen``."""
    generator = torch.Generator().manual_seed(seed)
    for name, tensor in model.state_dict().items():
        if name.endswith("running_var"):
            tensor.copy_(0.5 + torch.rand(tensor.shape, generator=generator))
        elif name.endswith("running_mean"):
            tensor.copy_(0.1 * torch.randn(tensor.shape, generator=generator))
        elif name.startswith("head.") and tensor.ndim == 1 and "conv" in name:  # GroupNorm / conv biases
            tensor.add_(0.1 * torch.randn(tensor.shape, generator=generator))
    model.head.classification_head.cls_logits.weight.mul_(sharpen[0])
    model.head.regression_head.bbox_reg.weight.mul_(sharpen[1])


def padded(images: list[torch.Tensor]) -> torch.Tensor:
    batch = torch.zeros(len(images), 3, max(i.shape[1] for i in images), max(i.shape[2] for i in images))
    for out, image in zip(batch, images):
        out[:, : image.shape[1], : image.shape[2]] = image
    return batch


@pytest.fixture(scope="module")
def images() -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return [torch.rand(3, h, w, generator=generator) for h, w in SIZES]


@pytest.fixture(scope="module", params=MODELS)
def pair(request, tmp_path_factory):
    """(name, torchvision model, cvzoo model loaded from its state dict file through the auto remap)."""
    name = request.param
    torch.manual_seed(0)
    reference = torchvision_model(name)
    randomise(reference, seed=1, sharpen=SHARPEN[name])
    path = tmp_path_factory.mktemp("onestage") / f"{name}.pth"
    torch.save(reference.state_dict(), path)
    ours = create_model(name, num_classes=91, min_size=MIN_SIZE, max_size=MAX_SIZE, weights=str(path))
    return name, reference, ours


def test_eval_detections_match_torchvision(pair, images):
    name, reference, ours = pair
    reference.eval()
    ours.eval()
    with torch.no_grad():
        expected = reference(images)
        got = ours.predict(padded(images), [tuple(i.shape[1:]) for i in images])
    for exp, det in zip(expected, got):
        assert len(exp["boxes"]) > 5, "the comparison needs detections"
        assert len(det) == len(exp["boxes"])
        torch.testing.assert_close(det.boxes, exp["boxes"], rtol=0, atol=1e-4)
        torch.testing.assert_close(det.scores, exp["scores"], rtol=0, atol=1e-4)
        torch.testing.assert_close(det.labels, exp["labels"])


def _targets() -> list[dict[str, torch.Tensor]]:
    """Objects of several sizes in the first image (some overlapping, so that FCOS picks the smaller); the
    second image has none."""
    return [{"boxes": torch.tensor([[10.0, 8.0, 60.0, 50.0], [20.0, 15.0, 40.0, 35.0], [70.0, 30.0, 120.0, 90.0],
                                    [2.0, 2.0, 126.0, 94.0], [5.0, 60.0, 30.0, 94.0]]),
             "labels": torch.tensor([0, 4, 88, 7, 2])},
            {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}]


@pytest.mark.parametrize("which", ["both", "objects_only"])
def test_training_losses_match_torchvision(pair, images, which):
    name, reference, ours = pair
    targets = _targets()
    batch = images if which == "both" else images[:1]
    targets = targets[: len(batch)]
    reference.train()
    ours.train()
    expected = reference(batch, [dict(t) for t in targets])
    got = ours(padded(batch), targets, [tuple(i.shape[1:]) for i in batch])
    parts = {"classification", "bbox_regression"} | ({"bbox_ctrness"} if name.startswith("fcos") else set())
    assert set(expected) == parts and set(got) == parts | {"loss"}
    for key, value in expected.items():
        torch.testing.assert_close(got[key], value.detach(), rtol=0, atol=1e-4, msg=key)
    torch.testing.assert_close(got["loss"].detach(), sum(expected.values()).detach(), rtol=0, atol=1e-4)


def test_a_from_scratch_torchvision_state_dict_loads_with_the_auto_remap(tmp_path):
    """torchvision's builder without weights: live batch norms (their num_batches_tracked are dropped)."""
    reference = tv_detection.fcos_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91,
                                               min_size=MIN_SIZE, max_size=MAX_SIZE)
    path = tmp_path / "tv.pt"
    torch.save(reference.state_dict(), path)
    ours = create_model("fcos_resnet50_fpn", num_classes=91, min_size=MIN_SIZE, max_size=MAX_SIZE)
    report = load_weights(ours, str(path))  # strict: every key must land
    assert report.remap == "torchvision:fcos"
    torch.testing.assert_close(ours.head.regression.predictions["bbox_ctrness"].weight,
                               reference.head.regression_head.bbox_ctrness.weight)


def test_a_retinanet_file_of_the_old_layout_loads(tmp_path):
    """torchvision's published RetinaNet checkpoint predates the Conv2dNormActivation towers: its tower convs
    are ``conv.0, conv.2, ...`` (conv, ReLU pairs)."""
    reference = torchvision_model("retinanet_resnet50_fpn")
    state = reference.state_dict()
    old = {}
    for key, value in state.items():
        parts = key.split(".")
        if key.startswith("head.") and parts[2] == "conv":  # head.<branch>.conv.i.0.weight -> conv.2i.weight
            key = ".".join(parts[:3] + [str(2 * int(parts[3])), parts[5]])
        old[key] = value
    path = tmp_path / "old.pth"
    torch.save(old, path)
    ours = create_model("retinanet_resnet50_fpn", num_classes=91, weights=str(path))
    torch.testing.assert_close(ours.head.regression.tower[3].conv.weight,
                               reference.head.regression_head.conv[3][0].weight)
