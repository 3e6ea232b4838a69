"""YOLO losses on hand-made cases: where the positives are, empty images, decoding, overfitting one image."""

from __future__ import annotations

import math

import pytest
import torch

from cvzoo.losses import distribution_focal_loss
from cvzoo.models import create_model
from cvzoo.models.detection.yolo_loss import YoloAnchorLoss, YoloV8Loss, expected_distances
from cvzoo.models.detection.yolov3 import COCO_ANCHORS, anchors_tensor
from cvzoo.ops import bbox2dist

STRIDES = (8, 16, 32)
NUM_CLASSES = 3
EMPTY = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}


def _anchor_outputs(size: int = 64, batch: int = 1) -> list[torch.Tensor]:
    """Zero raw predictions ``[B, 3, H, W, 5 + K]`` per level, as leaves that collect gradients."""
    return [torch.zeros(batch, 3, size // s, size // s, 5 + NUM_CLASSES, requires_grad=True) for s in STRIDES]


def _nonzero(grad: torch.Tensor) -> set[tuple[int, ...]]:
    return {tuple(i) for i in torch.nonzero(grad).tolist()}


def test_v3_one_box_best_anchor_positive_and_ignored_anchor():
    # A 40 x 40 box centred at (36, 36). Shape IoUs with the COCO anchors: (62, 45) 0.57 is the best
    # (level 1, anchor 1); (30, 61) 0.54 > 0.5 is ignored; the cell at stride 16 is (x, y) = (2, 2).
    outputs = _anchor_outputs()
    target = {"boxes": torch.tensor([[16.0, 16.0, 56.0, 56.0]]), "labels": torch.tensor([2])}
    loss = YoloAnchorLoss(NUM_CLASSES, STRIDES, assigner="v3")
    losses = loss(outputs, [target], anchors_tensor(COCO_ANCHORS))
    losses["loss"].backward()
    for level, out in enumerate(outputs):
        box_cls = _nonzero(out.grad[..., [0, 1, 2, 3, 5, 6, 7]].abs().sum(-1))
        assert box_cls == ({(0, 1, 2, 2)} if level == 1 else set())
    objectness = outputs[1].grad[..., 4]
    assert objectness[0, 1, 2, 2] < 0  # positive: pushed up
    assert objectness[0, 0, 2, 2] == 0  # ignored: no objectness loss
    assert objectness[0, 2, 2, 2] > 0 and outputs[0].grad[..., 4].gt(0).all()  # negatives: pushed down
    assert all(losses[k] > 0 for k in ("box", "obj", "cls"))


def test_v5_one_box_positives_on_all_matching_anchors_and_two_neighbours():
    # Box (cx, cy, w, h) = (21, 27, 30, 40). Anchors within a size ratio of 4: all three of level 0, all
    # three of level 1, (116, 90) of level 2. Cells: the centre's and its two nearest neighbours.
    outputs = _anchor_outputs()
    target = {"boxes": torch.tensor([[6.0, 7.0, 36.0, 47.0]]), "labels": torch.tensor([1])}
    loss = YoloAnchorLoss(NUM_CLASSES, STRIDES, assigner="v5")
    loss(outputs, [target], anchors_tensor(COCO_ANCHORS))["loss"].backward()
    cells = {
        0: [(3, 2), (3, 3), (2, 2)],  # centre (2.625, 3.375) in cells: right and up neighbours
        1: [(1, 1), (1, 0), (2, 1)],  # centre (1.3125, 1.6875): left and down
        2: [(0, 0), (0, 1), (1, 0)],  # centre (0.656, 0.844): right and down
    }
    anchors = {0: (0, 1, 2), 1: (0, 1, 2), 2: (0,)}
    for level, out in enumerate(outputs):
        expected = {(0, a, y, x) for a in anchors[level] for y, x in cells[level]}
        assert _nonzero(out.grad[..., 5:].abs().sum(-1)) == expected


def test_v8_one_box_topk_positives_inside_the_box():
    # Box [8, 8, 40, 40] on 64 x 64: 16 + 1 + 1 grid points strictly inside; the assigner keeps the top 10.
    torch.manual_seed(0)
    outputs = [torch.zeros(1, 64 + NUM_CLASSES, 64 // s, 64 // s, requires_grad=True) for s in STRIDES]
    target = {"boxes": torch.tensor([[8.0, 8.0, 40.0, 40.0]]), "labels": torch.tensor([0])}
    losses = YoloV8Loss(NUM_CLASSES, STRIDES)(outputs, [target])
    losses["loss"].backward()
    positives, inside = set(), set()
    for level, (out, stride) in enumerate(zip(outputs, STRIDES)):
        for _, y, x in _nonzero(out.grad[0, :64].abs().sum(0, keepdim=True)):
            positives.add((level, y, x))
        size = 64 // stride
        for y in range(size):
            for x in range(size):
                cx, cy = (x + 0.5) * stride, (y + 0.5) * stride
                if 8 < cx < 40 and 8 < cy < 40:
                    inside.add((level, y, x))
    assert len(inside) == 18
    assert len(positives) == 10 and positives <= inside
    assert all(losses[k] > 0 for k in ("box", "cls", "dfl"))


@pytest.mark.parametrize("assigner", ["v3", "v5"])
def test_anchor_loss_without_targets_has_only_objectness(assigner):
    outputs = _anchor_outputs(batch=2)
    losses = YoloAnchorLoss(NUM_CLASSES, STRIDES, assigner=assigner)(outputs, [EMPTY, EMPTY], anchors_tensor(COCO_ANCHORS))
    assert torch.isfinite(losses["loss"]) and losses["obj"] > 0
    assert losses["box"] == 0 and losses["cls"] == 0
    losses["loss"].backward()
    assert all(torch.isfinite(o.grad).all() for o in outputs)


def test_v8_loss_without_targets_has_only_the_class_term():
    outputs = [torch.randn(2, 64 + NUM_CLASSES, 64 // s, 64 // s, requires_grad=True) for s in STRIDES]
    losses = YoloV8Loss(NUM_CLASSES, STRIDES)(outputs, [EMPTY, EMPTY])
    assert torch.isfinite(losses["loss"]) and losses["cls"] > 0
    assert losses["box"] == 0 and losses["dfl"] == 0
    # Without positives the class target is all zeros and the BCE sum is divided by 1.
    logits = torch.cat([o.detach()[:, 64:].flatten(2) for o in outputs], dim=2)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits), reduction="sum")
    torch.testing.assert_close(losses["cls"], 0.5 * expected)
    torch.testing.assert_close(losses["loss"], 2 * 0.5 * expected)  # scaled by the batch size


def test_one_target_dict_per_image_is_required():
    with pytest.raises(ValueError, match="1 targets for a batch of 2"):
        YoloAnchorLoss(NUM_CLASSES, STRIDES)(_anchor_outputs(batch=2), [EMPTY], anchors_tensor(COCO_ANCHORS))
    outputs = [torch.zeros(2, 64 + NUM_CLASSES, 64 // s, 64 // s) for s in STRIDES]
    with pytest.raises(ValueError, match="3 targets for a batch of 2"):
        YoloV8Loss(NUM_CLASSES, STRIDES)(outputs, [EMPTY] * 3)


def test_v3_mse_box_loss_is_zero_for_a_perfect_encoding():
    # The paper's squared error: sigmoid(t_xy) = offset in the cell, t_wh = log(w / p_w).
    outputs = _anchor_outputs()
    target = {"boxes": torch.tensor([[16.0, 16.0, 56.0, 56.0]]), "labels": torch.tensor([2])}
    with torch.no_grad():
        t_wh = torch.log(torch.tensor([40.0 / 62, 40.0 / 45]))
        outputs[1][0, 1, 2, 2, :4] = torch.cat((torch.zeros(2) + math.log(0.25 / 0.75), t_wh))
    loss = YoloAnchorLoss(NUM_CLASSES, STRIDES, assigner="v3", box_loss="mse")
    losses = loss(outputs, [target], anchors_tensor(COCO_ANCHORS))
    assert losses["box"] < 1e-10 and losses["obj"] > 0
    with pytest.raises(ValueError, match="box_loss"):
        YoloAnchorLoss(NUM_CLASSES, STRIDES, assigner="v5", box_loss="mse")


def _two_bin_logits(left: float) -> torch.Tensor:
    """Logits putting mass ``left`` on bin 3 and ``1 - left`` on bin 4 (and ~0 elsewhere)."""
    logits = torch.full((1, 16), -30.0)
    logits[0, 3], logits[0, 4] = math.log(left), math.log(1 - left)
    return logits


def test_distribution_focal_loss_and_expected_distance():
    matching = _two_bin_logits(0.25)  # expectation 3 * 0.25 + 4 * 0.75 = 3.75
    assert expected_distances(matching.repeat(1, 4), 16)[0].tolist() == pytest.approx([3.75] * 4, abs=1e-5)
    # For the target 3.75 DFL is the cross-entropy to (1/4 on bin 3, 3/4 on bin 4): smallest, and equal to
    # that distribution's entropy, when the prediction is exactly it.
    target = torch.tensor([3.75])
    values = {left: distribution_focal_loss(_two_bin_logits(left), target).item() for left in (0.05, 0.25, 0.5, 0.9)}
    entropy = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert values[0.25] == pytest.approx(entropy, abs=1e-5)
    assert min(values, key=values.get) == 0.25


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


@pytest.mark.parametrize("name", ["yolov3_tiny", "yolov5n"])
def test_anchor_decode_inverts_the_encoding(name):
    # Encode a box at one cell/anchor by the model's own rule; decode must give it back at that index.
    model = create_model(name, num_classes=NUM_CLASSES)
    level, anchor = 1, 2
    stride, (anchor_w, anchor_h) = model.strides[level], model.anchors[level, anchor].tolist()
    box = torch.tensor([10.0, 28.0, 50.0, 52.0])  # centre (30, 40), size 40 x 24
    cx, cy, w, h = 30.0 / stride, 40.0 / stride, 40.0, 24.0
    x, y = int(cx), int(cy)
    if model.grid_sensitive:  # b = 2 sigmoid(t) - 0.5 + c; wh = (2 sigmoid(t))^2 p
        raw = [_logit((cx - x + 0.5) / 2), _logit((cy - y + 0.5) / 2),
               _logit(math.sqrt(w / anchor_w) / 2), _logit(math.sqrt(h / anchor_h) / 2)]
    else:  # b = sigmoid(t) + c; wh = exp(t) p
        raw = [_logit(cx - x), _logit(cy - y), math.log(w / anchor_w), math.log(h / anchor_h)]
    outputs = {k: torch.full((1, 3, 64 // s, 64 // s, 5 + NUM_CLASSES), -20.0)
               for k, s in zip(("p4", "p5") if name == "yolov3_tiny" else ("p3", "p4", "p5"), model.strides)}
    raw_map = outputs[model.level_names[level]]
    raw_map[0, anchor, y, x, :4] = torch.tensor(raw)
    raw_map[0, anchor, y, x, 4:] = torch.tensor([20.0, -20.0, 20.0, -20.0])
    decoded = model.decode(outputs)[0]
    best = decoded[:, 5].argmax()
    torch.testing.assert_close(decoded[best, :4], box, atol=1e-4, rtol=0)
    assert decoded[best, 5] == pytest.approx(1.0, abs=1e-6)


def test_v8_decode_inverts_bbox2dist():
    model = create_model("yolov8n", num_classes=NUM_CLASSES)
    # Point (x, y) = (3, 2) of the stride-8 grid, centre (28, 20) px; sides (2, 1, 3, 4) strides away.
    box = torch.tensor([12.0, 12.0, 52.0, 52.0])
    sides = bbox2dist(torch.tensor([28.0, 20.0]) / 8, box / 8)
    assert sides.tolist() == [2.0, 1.0, 3.0, 4.0]
    outputs = {k: torch.zeros(1, 64 + NUM_CLASSES, 64 // s, 64 // s) for k, s in zip(model.level_names, (8, 16, 32))}
    for side, bin_index in enumerate(sides.long().tolist()):
        outputs["p3"][0, side * 16 + bin_index, 2, 3] = 40.0
    outputs["p3"][0, 64 + 1, 2, 3] = 10.0
    decoded = model.decode(outputs)[0]
    index = 2 * 8 + 3  # row-major in the first level
    torch.testing.assert_close(decoded[index, :4], box, atol=1e-4, rtol=0)
    assert decoded[index, 4:].argmax() == 1 and decoded[:, 5].argmax() == index


@pytest.mark.parametrize("name", ["yolov8n", "yolov5n", "yolov3_tiny"])
def test_overfitting_one_image_lowers_the_loss(name, steps=12):
    torch.manual_seed(0)
    model = create_model(name, num_classes=NUM_CLASSES).train()
    image = torch.rand(1, 3, 64, 64)
    targets = [{"boxes": torch.tensor([[12.0, 10.0, 44.0, 50.0]]), "labels": torch.tensor([1])}]
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    history = []
    for _ in range(steps):
        losses = model.compute_loss(model(image), targets)
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()
        history.append({k: v.item() for k, v in losses.items()})
    assert all(math.isfinite(v["loss"]) for v in history)
    # YOLOv5's objectness target is the IoU, which grows while the boxes improve: the total may rise
    # for a few steps before it falls.
    assert history[-1]["loss"] < 0.6 * history[0]["loss"], history
