"""DETR's parts on hand-made cases: the padding-aware sine encoding, decoding without NMS, the set criterion's
bad input (more objects than queries) and empty images (every query matched to "no object")."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from cvzoo.models import create_model
from cvzoo.models.detection.base import TargetError
from cvzoo.models.detection.detr.criterion import SetCriterion
from cvzoo.models.detection.detr.position import SinePositionEncoding
from cvzoo.models.detection.one_pass import DetectSettings

SMALL = {"hidden_dim": 32, "num_heads": 2, "encoder_layers": 1, "decoder_layers": 2, "ffn_dim": 64, "num_queries": 4,
         "min_size": 64, "max_size": 96}


@pytest.fixture(scope="module")
def detr():
    torch.manual_seed(0)
    return create_model("detr_resnet18_tiny", num_classes=3, **SMALL)


def test_sine_encoding_counts_valid_cells_only():
    encode = SinePositionEncoding(num_features=4)
    full = torch.ones(1, 2, 3, dtype=torch.bool)
    padded = torch.zeros(1, 4, 5, dtype=torch.bool)
    padded[0, :2, :3] = True
    alone, inside = encode(full), encode(padded)
    assert alone.shape == (1, 8, 2, 3)
    torch.testing.assert_close(inside[..., :2, :3], alone)
    # Hand value: the cell at row 1, column 0 of a 2x3 image. Its row is 2 of 2 and its column 1 of 3,
    # normalised to 2 pi * index / extent; channel pairs (sin, cos) share the wavelength 10000^(2i/4).
    row, column = 2 * math.pi * 2 / (2 + 1e-6), 2 * math.pi * 1 / (3 + 1e-6)
    expected = [math.sin(row), math.cos(row), math.sin(row / 100), math.cos(row / 100),
                math.sin(column), math.cos(column), math.sin(column / 100), math.cos(column / 100)]
    torch.testing.assert_close(alone[0, :, 1, 0], torch.tensor(expected), rtol=0, atol=1e-5)


def test_decode_keeps_overlapping_queries_without_nms(detr):
    # Two queries predict the same box of class 1, one predicts "no object", one class 0 with a low score.
    logits = torch.full((1, 4, 4), -10.0)
    logits[0, 0, 1] = logits[0, 1, 1] = 10.0
    logits[0, 2, 3] = 10.0
    logits[0, 3, 0], logits[0, 3, 3] = 0.0, 1.0
    boxes = torch.tensor([[[0.5, 0.5, 0.5, 0.5], [0.5, 0.5, 0.5, 0.5], [0.2, 0.2, 0.1, 0.1], [0.25, 0.5, 0.5, 1.0]]])
    (result,) = detr.decode(logits, boxes, [(40, 100)], DetectSettings(score_thresh=0.2, detections_per_img=10))
    assert result.labels.tolist() == [1, 1, 0]
    torch.testing.assert_close(result.boxes[0], torch.tensor([25.0, 10.0, 75.0, 30.0]))  # in pixels of 100 x 40
    torch.testing.assert_close(result.boxes[2], torch.tensor([0.0, 0.0, 50.0, 40.0]))
    probabilities = logits[0, 3].softmax(-1)
    torch.testing.assert_close(result.scores[2], probabilities[0])
    (capped,) = detr.decode(logits, boxes, [(40, 100)], DetectSettings(score_thresh=0.2, detections_per_img=2))
    assert len(capped) == 2


def test_more_objects_than_queries_is_an_error_naming_the_image_and_both_counts(detr):
    images = torch.rand(2, 3, 64, 64)
    crowded = {"boxes": torch.tensor([[4.0 * i, 4.0 * i, 4.0 * i + 8, 4.0 * i + 8] for i in range(5)]),
               "labels": torch.zeros(5, dtype=torch.int64)}
    few = {"boxes": torch.tensor([[2.0, 2.0, 30.0, 30.0]]), "labels": torch.tensor([1])}
    detr.train()
    with pytest.raises(TargetError, match=r"image 1 of the batch has 5 objects but the model predicts 4 \(num_queries\)"):
        detr(images, [few, crowded])


def test_an_empty_image_trains_every_query_to_no_object():
    criterion = SetCriterion(num_classes=3)
    logits = torch.randn(2, 1, 4, 4, requires_grad=True)  # two decoder layers, one image, four queries
    boxes = torch.rand(2, 1, 4, 4, requires_grad=True)
    empty = [{"labels": torch.zeros(0, dtype=torch.int64), "boxes": torch.zeros(0, 4)}]
    losses = criterion(logits, boxes, empty)
    no_object = F.cross_entropy(logits[-1, 0], torch.full((4,), 3))  # one class weight: the plain mean
    torch.testing.assert_close(losses["loss_ce"], no_object.detach())
    assert losses["loss_bbox"] == 0 and losses["loss_giou"] == 0
    losses["loss"].backward()
    assert logits.grad.abs().sum() > 0 and torch.isfinite(logits.grad).all()
    assert boxes.grad is None or not boxes.grad.abs().sum()


def test_nms_settings_are_an_error(detr):
    detr.eval()
    with pytest.raises(ValueError, match="without NMS: iou_threshold=0.5"):
        detr.predict(torch.rand(1, 3, 64, 64), iou_threshold=0.5)


def test_the_flop_counter_traces_the_model(detr):
    """The run summary counts a model's FLOPs with PyTorch's module tracker, which hooks every module input
    that requires a gradient (the learned queries included)."""
    from cvzoo.analysis.flops import count_flops

    report = count_flops(detr, torch.rand(1, 3, 64, 64))
    assert report.gflops > 0
