"""The R-CNN parts one by one against torchvision's: transform, sampler, pooler, mask pasting, stage freezing."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch

from cvzoo.models.detection.fpn_backbone import fpn_backbone
from cvzoo.models.detection.rcnn.mask_head import paste_masks
from cvzoo.models.detection.rcnn.poolers import MultiScaleRoIAlign
from cvzoo.models.detection.rcnn.sampler import BalancedSampler
from cvzoo.models.detection.transform import DetectorTransform, resize_boxes

tv_detection = pytest.importorskip("torchvision.models.detection")


def test_transform_matches_torchvisions():
    from torchvision.models.detection.transform import GeneralizedRCNNTransform

    images = [torch.rand(3, 50, 70), torch.rand(3, 64, 40)]
    targets = [{"boxes": torch.tensor([[1.0, 2.0, 30.0, 40.0]]), "masks": torch.ones(1, 50, 70, dtype=torch.uint8)},
               {"boxes": torch.tensor([[5.0, 5.0, 20.0, 60.0]]), "masks": torch.ones(1, 64, 40, dtype=torch.uint8)}]
    reference = GeneralizedRCNNTransform(100, 130, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]).eval()
    ours = DetectorTransform(100, 130).eval()
    expected, expected_targets = reference(images, [dict(t) for t in targets])
    batch, sizes, got_targets = ours(images, targets)
    torch.testing.assert_close(batch, expected.tensors, rtol=0, atol=0)
    assert sizes == expected.image_sizes
    for got, exp in zip(got_targets, expected_targets):
        torch.testing.assert_close(got["boxes"], exp["boxes"], rtol=0, atol=0)
        torch.testing.assert_close(got["masks"], exp["masks"], rtol=0, atol=0)
    back = resize_boxes(got_targets[0]["boxes"], sizes[0], (50, 70))
    torch.testing.assert_close(back, targets[0]["boxes"])


def test_training_draws_the_min_size_as_torchvision():
    from torchvision.models.detection.transform import GeneralizedRCNNTransform

    images = [torch.rand(3, 50, 70) for _ in range(4)]
    reference = GeneralizedRCNNTransform((64, 80, 96), 200, [0.0] * 3, [1.0] * 3).train()
    torch.manual_seed(3)
    expected = reference(images)[0].image_sizes
    torch.manual_seed(3)
    assert DetectorTransform((64, 80, 96), 200).train()(images)[1] == expected


def test_sampler_draws_as_torchvision():
    from torchvision.models.detection._utils import BalancedPositiveNegativeSampler

    labels = [torch.randint(-1, 3, (500,)), torch.randint(-1, 2, (300,))]
    torch.manual_seed(1)
    pos, neg = BalancedPositiveNegativeSampler(64, 0.25)(labels)
    torch.manual_seed(1)
    for (our_pos, our_neg), p, n in zip(BalancedSampler(64, 0.25)(labels), pos, neg):
        assert torch.equal(our_pos, p.bool()) and torch.equal(our_neg, n.bool())


def test_multiscale_roi_align_matches_torchvision():
    from torchvision.ops import MultiScaleRoIAlign as Reference

    sizes = [(120, 100), (96, 128)]
    features = [torch.rand(2, 4, 128 // s, 128 // s) for s in (4, 8, 16, 32)]
    boxes = [torch.tensor([[0.0, 0.0, 10.0, 12.0], [5.0, 5.0, 95.0, 110.0], [20.0, 30.0, 60.0, 70.0]]),
             torch.tensor([[1.0, 2.0, 127.0, 90.0], [3.0, 3.0, 7.0, 9.0]])]
    reference = Reference(["0", "1", "2", "3"], 7, 2)
    expected = reference(OrderedDict((str(i), f) for i, f in enumerate(features)), boxes, sizes)
    torch.testing.assert_close(MultiScaleRoIAlign(7, 2)(features, boxes, sizes), expected, rtol=0, atol=0)


def test_paste_masks_matches_torchvision():
    from torchvision.models.detection.roi_heads import paste_masks_in_image

    masks = torch.rand(4, 28, 28)
    boxes = torch.tensor([[3.2, 4.7, 40.1, 30.3], [-5.0, -2.0, 20.0, 15.0], [50.0, 40.0, 80.0, 70.0], [10, 10, 10.5, 11]])
    expected = paste_masks_in_image(masks[:, None], boxes, (60, 64))[:, 0]
    torch.testing.assert_close(paste_masks(masks, boxes, (60, 64)), expected, rtol=0, atol=0)
    assert paste_masks(masks[:0], boxes[:0], (60, 64)).shape == (0, 60, 64)


@pytest.mark.parametrize("trainable", [0, 3, 5])
def test_resnet_stage_freezing_matches_torchvision(trainable):
    from torchvision.models import resnet18
    from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor

    reference = _resnet_fpn_extractor(resnet18(), trainable)
    expected = {n[len("body."):] for n, p in reference.named_parameters() if p.requires_grad and n.startswith("body.")}
    ours = fpn_backbone("resnet18", trainable_layers=trainable, frozen_batch_norm=False)
    assert {n[len("body."):] for n, p in ours.named_parameters() if p.requires_grad and n.startswith("body.")} == expected


@pytest.mark.parametrize("trainable", [0, 3, 6])
def test_mobilenet_stage_freezing_matches_torchvision(trainable):
    from torchvision.models import mobilenet_v3_large
    from torchvision.models.detection.backbone_utils import _mobilenet_extractor

    reference = _mobilenet_extractor(mobilenet_v3_large(), True, trainable)
    ours = fpn_backbone("mobilenet_v3_large", trainable_layers=trainable, frozen_batch_norm=False)
    count = sum(p.numel() for p in reference.body.parameters() if p.requires_grad)
    assert sum(p.numel() for p in ours.body.parameters() if p.requires_grad) == count
    assert len([p for p in ours.body.parameters() if p.requires_grad]) == \
        len([p for p in reference.body.parameters() if p.requires_grad])


def test_any_registered_classifier_serves_as_backbone():
    backbone = fpn_backbone("resnet18", trainable_layers=5)
    levels = backbone(torch.rand(1, 3, 64, 96))
    assert [tuple(x.shape[-2:]) for x in levels] == [(16, 24), (8, 12), (4, 6), (2, 3), (1, 2)]
    assert all(x.shape[1] == 256 for x in levels) and backbone.num_pooled_levels == 4


def test_no_proposal_left_gives_empty_detections_not_an_error():
    # An RPN whose score floor nothing reaches (sigmoid scores stay below 1) keeps no proposal: what an
    # untrained or diverging model can do on a whole validation batch.
    from cvzoo.models import create_model

    for name in ("fasterrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn"):
        model = create_model(name, num_classes=2, min_size=64, max_size=96, rpn_score_thresh=1.5).eval()
        images = torch.rand(2, 3, 64, 80)
        with torch.no_grad():
            detections = model.predict(images)
            target = {"boxes": torch.tensor([[4.0, 4.0, 30.0, 30.0]]), "labels": torch.tensor([1])}
            if model.predicts_masks:
                target["masks"] = torch.zeros(1, 64, 80, dtype=torch.uint8)
            losses, validated = model.validate(images, [target, target])
        for found in (detections, validated):
            assert [len(d) for d in found] == [0, 0]
            if model.predicts_masks:
                assert all(d.masks is not None and d.masks.shape[0] == 0 for d in found)
        assert torch.isfinite(losses["loss"])
