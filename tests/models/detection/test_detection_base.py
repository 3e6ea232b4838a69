"""The shared pieces of the detector contract: per-image target validation (padded batches, masks), the
image-size check, YOLO's parameter groups with a backbone learning-rate factor."""

from __future__ import annotations

import pytest
import torch

from cvzoo.models import create_model
from cvzoo.models.detection.base import Detections, TargetError, image_sizes_or_full, validate_targets


def test_targets_are_clipped_to_each_images_own_size():
    targets = [{"boxes": torch.tensor([[10.0, 10.0, 90.0, 60.0]]), "labels": torch.tensor([0])}] * 2
    full, small = validate_targets(targets, [(64, 96), (40, 50)], num_classes=1)
    assert full["boxes"].tolist() == [[10.0, 10.0, 90.0, 60.0]]
    assert small["boxes"].tolist() == [[10.0, 10.0, 50.0, 40.0]]
    one_size = validate_targets(targets, torch.Size((40, 50)), num_classes=1)
    assert one_size[0]["boxes"].tolist() == [[10.0, 10.0, 50.0, 40.0]]


def test_masks_follow_their_boxes_and_must_have_the_images_size():
    masks = torch.zeros(2, 32, 48, dtype=torch.uint8)
    target = {"boxes": torch.tensor([[1.0, 1.0, 20.0, 20.0], [5.0, 5.0, 5.5, 30.0]]), "labels": torch.tensor([0, 0]),
              "masks": masks}
    (kept,) = validate_targets([target], [(32, 48)], num_classes=1)
    assert kept["masks"].shape == (1, 32, 48)  # the thin box and its mask are dropped together
    with pytest.raises(TargetError, match=r"image 0 of the batch: masks must be \[N, H, W\] = \[2, 40, 48\].*"
                                          r"got \(2, 32, 48\)"):
        validate_targets([target], [(40, 48)], num_classes=1)


def test_image_sizes_must_fit_the_padded_batch():
    images = torch.zeros(2, 3, 64, 96)
    assert image_sizes_or_full(images, None) == [(64, 96), (64, 96)]
    assert image_sizes_or_full(images, [(64, 96), (30, 40)]) == [(64, 96), (30, 40)]
    with pytest.raises(ValueError, match="1 image sizes for a batch of 2"):
        image_sizes_or_full(images, [(64, 96)])
    with pytest.raises(ValueError, match=r"image size \(70, 40\) does not fit the padded batch \(64, 96\)"):
        image_sizes_or_full(images, [(64, 96), (70, 40)])


def test_detections_select_keeps_masks_aligned():
    det = Detections(torch.rand(3, 4), torch.tensor([0.9, 0.2, 0.5]), torch.tensor([0, 1, 2]), torch.rand(3, 8, 8))
    kept = det.select(det.scores > 0.4)
    assert kept.labels.tolist() == [0, 2] and torch.equal(kept.masks, det.masks[[0, 2]])


def test_yolo_groups_split_backbone_and_head_only_with_a_backbone_factor():
    model = create_model("yolov8n", num_classes=2)
    plain = model.param_groups(0.01, 0.0005)
    assert [g["name"] for g in plain] == ["weights", "norm", "bias"]
    split = model.param_groups(0.01, 0.0005, backbone_lr_mult=0.1)
    names = {g["name"]: g for g in split}
    assert set(names) == {"backbone", "backbone_norm", "backbone_bias", "head", "head_norm", "head_bias"}
    assert names["backbone"]["lr"] == pytest.approx(0.001) and names["head_bias"]["lr"] == 0.01
    assert names["head_bias"]["weight_decay"] == 0.0 and names["backbone"]["weight_decay"] == 0.0005
    assert sum(len(g["params"]) for g in split) == sum(len(g["params"]) for g in plain)
