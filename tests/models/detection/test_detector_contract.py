"""The Detector contract, checked on every registered detector (DESIGN.md, "Detectors").

Two entry points: ``model(images, targets, image_sizes)`` -> named finite losses whose gradients reach
every trainable parameter, and ``predict(images, image_sizes)`` -> ``list[Detections]`` in the pixels of
the images; a batch may hold a negative image (no boxes) and images of two sizes (padded, each image's
true size given); the state dict round-trips; the family's class attributes are well-formed (its recipe
is a valid config); a detector that declares itself exportable traces to ONNX and onnxruntime agrees.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from cvzoo.config import Config, apply_overrides
from cvzoo.models import create_model, list_models
from cvzoo.models.detection.base import Detections, Detector, InputPolicy
from cvzoo.models.registry import accepted_keywords, get_entry

DETECTORS = list_models(task="detect")
NUM_CLASSES = 3
# Two images of different sizes in one padded batch: 64x96 (full) and 48x64 (top-left of the padding).
SIZES = [(64, 96), (48, 64)]
# Two-stage detectors resize their images themselves (shorter side 800 by default) and run up to 1000
# proposals per image through their box head: small sizes and proposal counts keep them fast (on CPU the
# v2 box head costs seconds per default batch). The contract does not depend on these numbers.
SMALL_TWO_STAGE = {"min_size": 64, "max_size": 96, "rpn_post_nms_top_n_train": 100, "rpn_post_nms_top_n_test": 100,
                   "box_batch_size_per_image": 64}


# CornerNet's hourglass-104 has 201M parameters: building, training and exporting it here would take a
# minute. The contract runs its structure (5 levels, its module counts, 2 stacks, heads per stack) at 1/16
# of its widths; test_cornernet_parts.py checks the full model's size.
NARROW = {"cornernet_hourglass104": {"channels": (16, 16, 24, 24, 24, 32), "stem_channels": 8,
                                     "feature_channels": 16, "pool_channels": 8, "head_channels": 16}}


# DETR's transformer at an eighth of its width, one encoder and two decoder layers (the auxiliary losses still
# run), 20 queries (the crowded batches below hold 20 objects per image). detr_resnet50 keeps its ResNet-50;
# the DC5 and R101 variants, which differ from it only in their backbone (the DC5 one by its dilated last
# stage, kept here), run on ResNet-18: exporting a ResNet-101 costs 13 s. test_detr_parity.py checks the
# full-size detr_resnet50 against transformers.
NARROW.update({name: {"hidden_dim": 32, "num_heads": 2, "encoder_layers": 1, "decoder_layers": 2, "ffn_dim": 64,
                      "num_queries": 20, **({} if name == "detr_resnet50" else {"backbone": "resnet18"})}
               for name in DETECTORS if name.startswith("detr_")})

# RT-DETR at an eighth of its width on 64 x 64 inputs (84 encoder tokens), one RepVGG block per fusion block,
# two decoder layers, 20 queries and 20 denoising queries; rtdetr_r50vd keeps its ResNet-50-vd (the bottleneck
# layout), the others run on ResNet-18-vd. test_rtdetr_parity.py checks the architecture against transformers.
NARROW.update({name: {"hidden_dim": 32, "num_heads": 2, "encoder_ffn_dim": 64, "decoder_ffn_dim": 64, "num_blocks": 1,
                      "decoder_layers": 2, "num_queries": 20, "num_denoising": 20, "size": 64,
                      **({} if name == "rtdetr_r50vd" else {"backbone": "resnet18_vd"})}
               for name in DETECTORS if name.startswith("rtdetr_")})


def _build(name: str) -> Detector:
    accepted = accepted_keywords(get_entry(name).builder) or set()
    small = {k: v for k, v in SMALL_TWO_STAGE.items() if k in accepted}
    return create_model(name, num_classes=NUM_CLASSES, **small, **NARROW.get(name, {}))


def _batch(seed: int = 0) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    generator = torch.Generator().manual_seed(seed)
    images = torch.zeros(2, 3, *SIZES[0])
    for i, (h, w) in enumerate(SIZES):
        images[i, :, :h, :w] = torch.rand(3, h, w, generator=generator)
    targets = [
        # Small, medium and large objects, so that every level of a multi-level head gets positives.
        {"boxes": torch.tensor([[8.0, 6.0, 24.0, 20.0], [50.0, 20.0, 90.0, 60.0], [2.0, 2.0, 94.0, 62.0]]),
         "labels": torch.tensor([0, 2, 1])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},  # a negative image
    ]
    return images, targets


def _for(detector: Detector, targets: list[dict[str, torch.Tensor]]) -> list[dict[str, torch.Tensor]]:
    """The targets a detector trains on: an instance-segmentation detector (``predicts_masks``, Mask R-CNN)
    also gets ``masks`` (uint8 [N, H, W] in each image's pixels; here each box filled)."""
    if not getattr(detector, "predicts_masks", False):
        return targets
    with_masks = []
    for (height, width), target in zip(SIZES, targets):
        masks = torch.zeros(len(target["boxes"]), height, width, dtype=torch.uint8)
        for mask, (x1, y1, x2, y2) in zip(masks, target["boxes"].round().int().tolist()):
            mask[y1:y2, x1:x2] = 1
        with_masks.append({**target, "masks": masks})
    return with_masks


@pytest.fixture(scope="module", params=DETECTORS)
def detector(request) -> Detector:
    torch.manual_seed(0)
    return _build(request.param)


def test_the_family_declares_its_policy_reduction_and_a_valid_recipe(detector):
    assert isinstance(detector, Detector) and detector.num_classes == NUM_CLASSES
    assert isinstance(detector.input_policy, InputPolicy)
    assert detector.input_policy.resize in ("letterbox", "model") and detector.input_policy.size_divisible > 0
    assert detector.loss_reduction in ("mean", "sum")
    if detector.default_recipe:
        apply_overrides(Config(task="detect"), detector.default_recipe)  # raises on an unknown key


def _crowded_targets(seed: int) -> list[dict[str, torch.Tensor]]:
    """Twenty objects of every size per image: positives for every level of a multi-level head."""
    generator = torch.Generator().manual_seed(seed)
    targets = []
    for height, width in SIZES:
        size = 4 + torch.rand(20, 2, generator=generator) * torch.tensor([width - 8.0, height - 8.0])
        corner = torch.rand(20, 2, generator=generator) * (torch.tensor([width, height]) - size)
        targets.append({"boxes": torch.cat((corner, corner + size), dim=1),
                        "labels": torch.randint(0, NUM_CLASSES, (20,), generator=generator)})
    return targets


def test_losses_are_finite_and_reach_every_trainable_parameter(detector):
    images, targets = _batch()
    detector.train()
    detector.zero_grad()
    losses = detector(images, _for(detector, targets), SIZES)
    assert "loss" in losses and len(losses) > 1, "a total and its named parts"
    for name, value in losses.items():
        assert value.ndim == 0 and torch.isfinite(value), name
    losses["loss"].backward()
    # Which anchors become positives depends on the random initial predictions (YOLOv8's task-aligned
    # assigner): a few crowded batches make sure every level's branch was assigned some.
    def missing() -> list[str]:
        return [n for n, p in detector.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum())]

    for seed in range(3):
        if not missing():
            break
        detector(images, _for(detector, _crowded_targets(seed)), SIZES)["loss"].backward()
    assert not missing(), f"no gradient reaches {missing()[:5]}"


def test_a_batch_of_negative_images_trains(detector):
    images, targets = _batch()
    detector.train()
    losses = detector(images, _for(detector, [targets[1], targets[1]]), SIZES)
    assert torch.isfinite(losses["loss"])
    losses["loss"].backward()


def test_predict_returns_detections_in_each_images_pixels(detector):
    images, _ = _batch()
    detector.eval()
    with torch.no_grad():
        results = detector.predict(images, SIZES, conf_threshold=0.0, max_detections=20)
    assert len(results) == 2
    for result in results:
        assert isinstance(result, Detections) and len(result) <= 20
        assert result.boxes.shape == (len(result), 4) and torch.isfinite(result.boxes).all()
        assert result.scores.shape == result.labels.shape == (len(result),)
        assert ((result.labels >= 0) & (result.labels < NUM_CLASSES)).all()
        assert ((result.scores >= 0) & (result.scores <= 1)).all()
    assert len(results[0]) > 0, "conf 0 keeps candidates"


def test_validate_gives_the_losses_and_the_detections_of_one_pass(detector):
    images, targets = _batch()
    detector.eval()
    with torch.no_grad():
        losses, detections = detector.validate(images, _for(detector, targets), SIZES, conf_threshold=0.0, max_detections=20)
        alone = detector.predict(images, SIZES, conf_threshold=0.0, max_detections=20)
    assert torch.isfinite(losses["loss"])
    for ours, reference in zip(detections, alone):
        torch.testing.assert_close(ours.boxes, reference.boxes)
        torch.testing.assert_close(ours.scores, reference.scores)


def test_state_dict_round_trip(detector, request):
    images, _ = _batch(seed=1)
    copy = _build(request.node.callspec.params["detector"])
    copy.load_state_dict(detector.state_dict())
    detector.eval()
    copy.eval()
    with torch.no_grad():
        expected = detector.predict(images, SIZES, conf_threshold=0.0, max_detections=10)
        got = copy.predict(images, SIZES, conf_threshold=0.0, max_detections=10)
    for a, b in zip(expected, got):
        torch.testing.assert_close(a.boxes, b.boxes)
        torch.testing.assert_close(a.scores, b.scores)


def test_export_where_the_model_declares_it(detector, tmp_path):
    if not detector.exportable:
        with pytest.raises(NotImplementedError):
            detector.export_module()
        return
    ort = pytest.importorskip("onnxruntime")
    detector.eval()
    module = detector.export_module().eval()
    example = torch.rand(1, 3, 64, 64)
    path = tmp_path / "detector.onnx"
    # A module that takes images of any size (R-CNN: one image, its detections) names its dynamic axes and
    # its outputs; it is then also run at another size than the traced one.
    dynamic_axes = getattr(module, "dynamic_axes", None)
    # The TorchScript tracer on every detector, whichever exporter its module declares: the contract is that
    # the graph traces and agrees, and the tracer does it in ~1 s where the torch.export-based exporter takes
    # 3-15 s per detector (docs/deploy.md). The declared exporter runs end to end once per export-module
    # family: DecodedDetector in tests/export/test_deploy_formats.py (YOLOv8) and
    # test_detection_cornernet_e2e.py, RCNNExport (tracer) in test_detection_rcnn_e2e.py.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (example,), str(path), input_names=["images"],
                          output_names=list(getattr(module, "output_names", ["output"])), dynamic_axes=dynamic_axes,
                          opset_version=17, dynamo=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    images = [example] + ([torch.rand(1, 3, 48, 80)] if dynamic_axes and 2 in dynamic_axes.get("images", {}) else [])
    # Final detections in pixels after ResNet-50 + FPN + two heads carry the float32 noise of the runtimes'
    # convolutions, ~2e-3 pixels (test_rcnn_export.py measures it); dense maps agree to 1e-3.
    atol = 1e-2 if dynamic_axes else 1e-3
    for image in images:
        with torch.no_grad():
            expected = module(image)
        expected = (expected,) if isinstance(expected, torch.Tensor) else expected
        got = session.run(None, {"images": image.numpy()})
        assert len(got) == len(expected)
        for a, b in zip(expected, got):
            assert tuple(a.shape) == b.shape
        if dynamic_axes:  # final detections: rows whose scores tie within the noise may come in either order
            expected = _in_order_of(expected, got)
        for a, b in zip(expected, got):
            np.testing.assert_allclose(b, a.numpy(), rtol=0, atol=atol)


def _in_order_of(expected: tuple[torch.Tensor, ...], got: list[np.ndarray]) -> list[torch.Tensor]:
    """``expected`` (boxes, scores, labels, ...) with its rows permuted to match ``got``'s: each row of
    ``got`` takes the unused expected row of the same label with the nearest box and score."""
    boxes, scores, labels = expected[0].numpy(), expected[1].numpy(), expected[2].numpy()
    free, order = np.ones(len(boxes), bool), []
    for box, score, label in zip(got[0], got[1], got[2]):
        cost = np.abs(boxes - box).max(axis=1) + np.abs(scores - score) + 1e9 * (labels != label) + 1e9 * ~free
        best = int(cost.argmin())
        free[best] = False
        order.append(best)
    return [tensor[order] for tensor in expected]
