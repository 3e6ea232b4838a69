"""Test-time augmentation: the exact inverse mapping, the merged predictions, the task's predict path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cvzoo.models.detection.dense import nms_postprocess
from cvzoo.models.detection.tta import (
    DEFAULT_PASSES,
    PAD_VALUE,
    AugmentPass,
    augment_boxes,
    augment_images,
    augmented_predictions,
    deaugment_predictions,
)
from tests.models.detection.helpers import calibrated_detector


def test_pass_geometry_and_hand_computed_box():
    images = torch.rand(1, 3, 480, 640)
    out, (rx, ry) = augment_images(images, AugmentPass(0.83, flip=True), stride=32)
    # round(480 * 0.83) = 398, round(640 * 0.83) = 531, padded to 416 x 544 (multiples of 32).
    assert out.shape == (1, 3, 416, 544)
    assert (rx, ry) == (531 / 640, 398 / 480)
    assert torch.all(out[..., 398:, :] == PAD_VALUE) and torch.all(out[..., :, 531:] == PAD_VALUE)
    box = torch.tensor([[10.0, 20.0, 50.0, 60.0]])
    # Flip x -> 640 - x (x1 and x2 swap places), then scale.
    expected = torch.tensor([[590 * rx, 20 * ry, 630 * rx, 60 * ry]])
    moved = augment_boxes(box, (rx, ry), flip=True, width=640)
    torch.testing.assert_close(moved, expected)
    scores = torch.tensor([[0.9, 0.1]])
    back = deaugment_predictions(torch.cat([moved, scores], dim=1), (rx, ry), flip=True, width=640)
    torch.testing.assert_close(back, torch.cat([box, scores], dim=1), rtol=0, atol=1e-5)


@pytest.mark.parametrize("augment", [AugmentPass(1.0), AugmentPass(1.0, flip=True), AugmentPass(0.67),
                                     AugmentPass(0.83, flip=True), AugmentPass(1.3, flip=True)])
def test_inverse_mapping_round_trip(augment):
    torch.manual_seed(0)
    images = torch.rand(1, 3, 96, 160)
    _, ratio = augment_images(images, augment)
    xy = torch.rand(50, 2) * torch.tensor([160.0, 96.0])
    boxes = torch.cat([xy, xy + torch.rand(50, 2) * 40], dim=1)
    predictions = torch.cat([augment_boxes(boxes, ratio, augment.flip, 160), torch.rand(50, 3)], dim=1)
    back = deaugment_predictions(predictions, ratio, augment.flip, 160)
    torch.testing.assert_close(back[:, :4], boxes, rtol=0, atol=1e-4)
    assert torch.all(back[:, 2] >= back[:, 0])
    torch.testing.assert_close(back[:, 4:], predictions[:, 4:])


def test_flip_pass_is_the_mirrored_image():
    images = torch.rand(2, 3, 64, 96)
    out, ratio = augment_images(images, AugmentPass(1.0, flip=True))
    assert ratio == (1.0, 1.0)
    torch.testing.assert_close(out, images.flip(-1))


def test_augmented_predictions_structure():
    model = calibrated_detector("yolov8n", num_classes=3)
    images = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        merged = augmented_predictions(lambda x: model.decode(model(x)), images, stride=32)
    # 64 x 96 -> 126 anchors (8x12 + 4x6 + 2x3); 0.83 -> 53 x 80 padded to 64 x 96 -> 126; 0.67 -> 43 x 64
    # padded to 64 x 64 -> 84.
    assert merged.shape == (2, 126 + 126 + 84, 4 + 3)
    assert torch.isfinite(merged).all()
    assert merged[..., 4:].min() >= 0 and merged[..., 4:].max() <= 1
    assert torch.all(merged[..., 2] >= merged[..., 0]) and torch.all(merged[..., 3] >= merged[..., 1])
    detections = nms_postprocess(merged, 0.001, 0.7, 50)
    assert len(detections) == 2 and all(0 < len(d) <= 50 for d in detections)


def _hand_merged(model, x: torch.Tensor) -> torch.Tensor:
    """The three passes written out: flip by hand, resize, pad bottom/right, then undo each mapping."""
    height, width = x.shape[-2:]
    parts = []
    for scale, flip in ((1.0, False), (0.83, True), (0.67, False)):
        image = x.flip(3) if flip else x
        new_h, new_w = round(height * scale), round(width * scale)
        if scale != 1.0:
            image = F.interpolate(image, size=(new_h, new_w), mode="bilinear", align_corners=False)
        image = F.pad(image, (0, -new_w % 32, 0, -new_h % 32), value=114 / 255)
        pred = model.decode(model(image))
        x1, y1 = pred[..., 0] * width / new_w, pred[..., 1] * height / new_h
        x2, y2 = pred[..., 2] * width / new_w, pred[..., 3] * height / new_h
        if flip:
            x1, x2 = width - x2, width - x1
        parts.append(torch.cat([torch.stack([x1, y1, x2, y2], -1), pred[..., 4:]], -1))
    return torch.cat(parts, 1)


def test_task_predict_with_augment_equals_hand_merged_passes(tmp_path):
    from PIL import Image

    from cvzoo.api import build_config
    from cvzoo.data.augment import detect as T
    from cvzoo.tasks.detection import DetectionTask

    assert [(p.scale, p.flip) for p in DEFAULT_PASSES] == [(1.0, False), (0.83, True), (0.67, False)]
    rng = np.random.default_rng(0)
    image = (rng.random((50, 90, 3)) * 255).astype(np.uint8)
    path = tmp_path / "image.png"
    Image.fromarray(image).save(path)
    task = DetectionTask(build_config(task="detect", imgsz=96))
    task.class_names = ["a", "b", "c"]
    model = calibrated_detector("yolov8n", num_classes=3, size=(96, 96))

    plain = task.predict_files(model, [path], torch.device("cpu"), conf=0.01)[0]["detections"]
    task.augment = True
    got = task.predict_files(model, [path], torch.device("cpu"), conf=0.01)[0]["detections"]
    assert got and got != plain

    # Predict pads only to the next multiple of the stride (64 x 96 here), not to the square.
    boxed, _, ratio, pad = T.LetterBox(96, stride=32, auto=True, scaleup=True).apply(image)
    x = torch.from_numpy(np.ascontiguousarray(boxed.transpose(2, 0, 1))).float().div(255).unsqueeze(0)
    with torch.no_grad():
        detections = nms_postprocess(_hand_merged(model, x), 0.01, 0.7, 300)[0]
    boxes = T.scale_boxes_back(detections.boxes, ratio, pad, image.shape[:2])
    assert len(got) == len(detections)
    assert [d["label"] for d in got] == detections.labels.tolist()
    np.testing.assert_allclose([d["box"] for d in got], boxes.numpy(), atol=0.01)  # rows are rounded to 0.01
    np.testing.assert_allclose([d["score"] for d in got], detections.scores.numpy(), atol=1e-5)


def test_augment_is_rejected_for_exported_graphs(tmp_path):
    from cvzoo.api import build_config
    from cvzoo.tasks.detection import DetectionTask

    task = DetectionTask(build_config(task="detect", imgsz=64))
    task.augment = True
    with pytest.raises(ValueError, match="torch backend"):
        task.predict_files(lambda x: x, [tmp_path / "missing.png"], torch.device("cpu"))


def test_tasks_without_tta_say_so():
    from cvzoo.api import build_config, enable_augment
    from cvzoo.tasks import task_class

    for name in ("segment", "siamese"):
        task = task_class(name)(build_config(task=name))
        with pytest.raises(ValueError, match=f"not available for the '{name}' task"):
            enable_augment(task)
    for name in ("detect", "classify"):
        task = task_class(name)(build_config(task=name))
        enable_augment(task)
        assert task.augment
