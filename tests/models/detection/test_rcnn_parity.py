"""Faster / Mask R-CNN against torchvision: a torchvision state dict loads through the remap, and with the
same weights the detections (eval) and the losses (training, same seed: same sampled anchors and
proposals) agree.

torchvision's models are built as its builders build them for pretrained weights (frozen batch norm in
the v1 and MobileNet backbones), with random weights whose batch-norm statistics are perturbed and whose
classifier is sharpened, so that the detections are many and distinct.
"""

from __future__ import annotations

import pytest
import torch

from cvzoo.models import create_model
from cvzoo.models.weights import WeightsMismatchError, load_weights

tv_detection = pytest.importorskip("torchvision.models.detection")

MIN_SIZE, MAX_SIZE = 128, 192
# Two images of different sizes (the second is padded into the batch).
SIZES = [(96, 128), (80, 72)]
MODELS = ["fasterrcnn_resnet50_fpn", "fasterrcnn_resnet50_fpn_v2", "fasterrcnn_mobilenet_v3_large_fpn",
          "fasterrcnn_mobilenet_v3_large_320_fpn", "maskrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn_v2"]


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def torchvision_model(name: str, **kwargs) -> torch.nn.Module:
    """torchvision's ``name`` as its builder makes it with pretrained weights (frozen batch norm where it
    freezes), random weights, num_classes 91."""
    from torchvision.models import mobilenet_v3_large, resnet50
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.backbone_utils import _mobilenet_extractor, _resnet_fpn_extractor
    from torchvision.ops.misc import FrozenBatchNorm2d

    kwargs = {"min_size": MIN_SIZE, "max_size": MAX_SIZE, **kwargs}
    if name == "fasterrcnn_resnet50_fpn":
        return tv_detection.FasterRCNN(_resnet_fpn_extractor(resnet50(norm_layer=FrozenBatchNorm2d), 3), 91, **kwargs)
    if name == "maskrcnn_resnet50_fpn":
        return tv_detection.MaskRCNN(_resnet_fpn_extractor(resnet50(norm_layer=FrozenBatchNorm2d), 3), 91, **kwargs)
    if name.endswith("_v2"):
        return getattr(tv_detection, name)(weights=None, weights_backbone=None, num_classes=91, **kwargs)
    backbone = _mobilenet_extractor(mobilenet_v3_large(norm_layer=FrozenBatchNorm2d), True, 3)
    anchors = AnchorGenerator(((32, 64, 128, 256, 512),) * 3, ((0.5, 1.0, 2.0),) * 3)
    extra = {"rpn_pre_nms_top_n_test": 150, "rpn_post_nms_top_n_test": 150} if "320" in name else {}
    return tv_detection.FasterRCNN(backbone, 91, rpn_anchor_generator=anchors, rpn_score_thresh=0.05,
                                   **extra, **kwargs)


@torch.no_grad()
def randomise(model: torch.nn.Module, seed: int, sharpen: float = 30.0) -> None:
    """Spread batch-norm statistics and sharpen the classifier (its weights times ``sharpen``): distinct,
    confident detections."""
    generator = torch.Generator().manual_seed(seed)
    for name, tensor in model.state_dict().items():
        if name.endswith("running_var"):
            tensor.copy_(0.5 + torch.rand(tensor.shape, generator=generator))
        elif name.endswith("running_mean"):
            tensor.copy_(0.1 * torch.randn(tensor.shape, generator=generator))
    model.roi_heads.box_predictor.cls_score.weight.mul_(sharpen)


@pytest.fixture(scope="module")
def images() -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return [torch.rand(3, h, w, generator=generator) for h, w in SIZES]


def padded(images: list[torch.Tensor]) -> torch.Tensor:
    batch = torch.zeros(len(images), 3, max(i.shape[1] for i in images), max(i.shape[2] for i in images))
    for out, image in zip(batch, images):
        out[:, : image.shape[1], : image.shape[2]] = image
    return batch


def targets_for(masks: bool) -> list[dict[str, torch.Tensor]]:
    """Objects in each image's pixels, 0-based labels (torchvision's = ours + 1)."""
    boxes = [torch.tensor([[10.0, 8.0, 60.0, 50.0], [70.0, 30.0, 120.0, 90.0], [5.0, 60.0, 30.0, 94.0]]),
             torch.tensor([[4.0, 4.0, 40.0, 70.0]])]
    labels = [torch.tensor([0, 4, 88]), torch.tensor([2])]
    targets = []
    for (h, w), b, lab in zip(SIZES, boxes, labels):
        target = {"boxes": b, "labels": lab}
        if masks:
            m = torch.zeros(len(b), h, w, dtype=torch.uint8)
            for i, (x1, y1, x2, y2) in enumerate(b.int().tolist()):
                m[i, y1 + (y2 - y1) // 4:y2, x1:x2 - (x2 - x1) // 3] = 1  # not the whole box
            target["masks"] = m
        targets.append(target)
    return targets


@pytest.fixture(scope="module", params=MODELS)
def pair(request, tmp_path_factory):
    """(name, torchvision model, cvzoo model loaded from its state dict file through the remap)."""
    name = request.param
    torch.manual_seed(0)
    reference = torchvision_model(name)
    randomise(reference, seed=1, sharpen=300.0 if "mobilenet" in name else 30.0)  # MobileNet's maps are weaker
    path = tmp_path_factory.mktemp("rcnn") / f"{name}.pth"
    torch.save(reference.state_dict(), path)
    ours = create_model(name, num_classes=90, min_size=MIN_SIZE, max_size=MAX_SIZE, weights=str(path))
    return name, reference, ours


@pytest.mark.slow
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
        torch.testing.assert_close(det.labels + 1, exp["labels"])
        if "masks" in exp:
            assert det.masks is not None and det.masks.shape == exp["masks"][:, 0].shape
            torch.testing.assert_close(det.masks, exp["masks"][:, 0], rtol=0, atol=1e-4)


@pytest.mark.slow
def test_training_losses_match_torchvision(pair, images):
    name, reference, ours = pair
    masks = name.startswith("maskrcnn")
    targets = targets_for(masks)
    tv_targets = [{**t, "labels": t["labels"] + 1} for t in targets]
    reference.train()
    ours.train()
    torch.manual_seed(5)
    expected = reference(images, tv_targets)
    torch.manual_seed(5)
    got = ours(padded(images), targets, [tuple(i.shape[1:]) for i in images])
    assert set(got) == set(expected) | {"loss"}
    for key, value in expected.items():
        torch.testing.assert_close(got[key], value.detach(), rtol=0, atol=1e-4, msg=key)
    torch.testing.assert_close(got["loss"].detach(), sum(expected.values()).detach(), rtol=0, atol=1e-4)


def test_another_architectures_checkpoint_is_refused_with_the_mismatching_keys(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "mobile.pth"
    torch.save(torchvision_model("fasterrcnn_mobilenet_v3_large_fpn").state_dict(), path)
    model = create_model("fasterrcnn_resnet50_fpn", num_classes=90)
    with pytest.raises(WeightsMismatchError, match="missing"):
        load_weights(model, path)


def test_a_coco_checkpoint_fine_tunes_to_other_classes(tmp_path):
    torch.manual_seed(0)
    reference = torchvision_model("fasterrcnn_resnet50_fpn")
    path = tmp_path / "coco.pth"
    torch.save(reference.state_dict(), path)
    model = create_model("fasterrcnn_resnet50_fpn", num_classes=2, weights=str(path), strict=False)
    report = load_weights(model, path, strict=False)
    skipped = sorted(key for key, _, _ in report.mismatched_shapes)
    assert skipped == ["roi_heads.box_predictor.bbox_pred.bias", "roi_heads.box_predictor.bbox_pred.weight",
                       "roi_heads.box_predictor.cls_score.bias", "roi_heads.box_predictor.cls_score.weight"]
    assert not report.missing and not report.unexpected
    torch.testing.assert_close(model.rpn.head.objectness.weight, reference.rpn.head.cls_logits.weight)
    assert model.roi_heads.box_predictor.cls_score.out_features == 3  # 2 classes + background


def test_a_from_scratch_torchvision_state_dict_loads_with_the_auto_remap(tmp_path):
    """Trainable batch norms carry num_batches_tracked counters: they must not make the identity layout
    look like the better match (it then failed on the FPN and RPN keys)."""
    reference = tv_detection.fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91,
                                                     min_size=MIN_SIZE, max_size=MAX_SIZE)
    path = tmp_path / "tv.pt"
    torch.save(reference.state_dict(), path)
    ours = create_model("fasterrcnn_resnet50_fpn", num_classes=90, frozen_batch_norm=False,
                        trainable_backbone_layers=5, min_size=MIN_SIZE, max_size=MAX_SIZE)
    load_weights(ours, str(path))  # the auto remap; strict, so every key must land
    torch.testing.assert_close(ours.state_dict()["rpn.head.objectness.weight"],
                               reference.state_dict()["rpn.head.cls_logits.weight"])
