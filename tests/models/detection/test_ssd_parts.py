"""SSD's parts against torchvision's: default boxes (bit-identical, SSD300's explicit scales and steps and
SSDlite's computed scales), the fixed-size image transform, the matching, the hard negative mining and the
loss on the same head outputs, the heads with the same weights; and the input-size error."""

from __future__ import annotations

import pytest
import torch

from cvzoo.models import create_model
from cvzoo.models.detection.ssd import SSD, hard_negatives, ssd_match
from cvzoo.models.detection.ssd_remap import torchvision_ssd_to_cvzoo
from cvzoo.models.detection.transform import DetectorTransform

tv_detection = pytest.importorskip("torchvision.models.detection")
from torchvision.models.detection import _utils as tv_utils  # noqa: E402
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator  # noqa: E402
from torchvision.models.detection.image_list import ImageList  # noqa: E402
from torchvision.models.detection.transform import GeneralizedRCNNTransform  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


@pytest.fixture(scope="module")
def ssdlite() -> SSD:
    torch.manual_seed(0)
    return create_model("ssdlite320_mobilenet_v3_large", num_classes=4)


def _tv_boxes(generator: DefaultBoxGenerator, size: tuple[int, int], feature_sizes: list[tuple[int, int]]) -> torch.Tensor:
    images = ImageList(torch.zeros(1, 3, *size), [size])
    maps = [torch.zeros(1, 1, h, w) for h, w in feature_sizes]
    return generator(images, maps)[0]


def test_ssd300_default_boxes_are_torchvisions_bit_for_bit():
    model = SSD.__new__(SSD)  # the default-box settings only, without building VGG
    model.size, model.aspect_ratios = (300, 300), ((2.0,), (2.0, 3.0), (2.0, 3.0), (2.0, 3.0), (2.0,), (2.0,))
    model.scales, model.steps = (0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05), (8, 16, 32, 64, 100, 300)
    model.min_ratio, model.max_ratio = 0.15, 0.9
    sizes = [(38, 38), (19, 19), (10, 10), (5, 5), (3, 3), (1, 1)]
    ours = SSD.default_boxes(model, sizes, torch.device("cpu"), torch.float32)
    reference = _tv_boxes(DefaultBoxGenerator([[2], [2, 3], [2, 3], [2, 3], [2], [2]], scales=list(model.scales),
                                              steps=list(model.steps)), (300, 300), sizes)
    assert ours.shape == (8732, 4)
    assert torch.equal(ours, reference)


def test_ssdlite_default_boxes_clip_and_scales_are_torchvisions_bit_for_bit(ssdlite):
    assert ssdlite.feature_sizes == [(20, 20), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1)]
    ours = ssdlite.default_boxes(ssdlite.feature_sizes, torch.device("cpu"), torch.float32)
    generator = DefaultBoxGenerator([[2, 3] for _ in range(6)], min_ratio=0.2, max_ratio=0.95)
    assert torch.equal(ours, _tv_boxes(generator, (320, 320), ssdlite.feature_sizes))
    # Scale 0.95 with ratio 3 gives a 1.65-wide box: its width is clipped to the image's (corners are not).
    widths = ours[:, 2] - ours[:, 0]
    assert widths.max() == 320 and ours[:, 2].max() > 320


def test_fixed_size_transform_is_torchvisions():
    generator = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 70, 90, generator=generator), torch.rand(3, 120, 40, generator=generator)]
    targets = [{"boxes": torch.tensor([[5.0, 6.0, 50.0, 60.0]]), "labels": torch.tensor([1])},
               {"boxes": torch.tensor([[1.0, 2.0, 30.0, 100.0]]), "labels": torch.tensor([2])}]
    mean, std = [0.48235, 0.45882, 0.40784], [1 / 255.0] * 3
    ours = DetectorTransform(300, 300, mean, std, size_divisible=1, fixed_size=(300, 300)).train()
    reference = GeneralizedRCNNTransform(300, 300, mean, std, size_divisible=1, fixed_size=(300, 300)).train()
    batch, sizes, new_targets = ours(images, [dict(t) for t in targets])
    expected, expected_targets = reference(images, [dict(t) for t in targets])
    assert torch.equal(batch, expected.tensors) and sizes == [(300, 300)] * 2
    for a, b in zip(new_targets, expected_targets):
        assert torch.equal(a["boxes"], b["boxes"])
    # The shorter/longer-side rule is unchanged without fixed_size.
    plain, plain_sizes, _ = DetectorTransform(64, 100, size_divisible=32)(images)
    assert plain_sizes == [(64, 82), (100, 33)] and plain.shape[-2:] == (128, 96)


def test_matching_forces_each_ground_truths_best_box_like_torchvision():
    generator = torch.Generator().manual_seed(1)
    anchors = torch.rand(300, 2, generator=generator) * 200
    anchors = torch.cat((anchors, anchors + 5 + torch.rand(300, 2, generator=generator) * 60), dim=1)
    # A tiny box no default box overlaps at 0.5: it still gets its best one.
    gt = torch.tensor([[10.0, 10.0, 60.0, 70.0], [100.0, 40.0, 103.0, 44.0], [20.0, 15.0, 70.0, 80.0]])
    ours = ssd_match(gt, anchors, 0.5)
    reference = tv_utils.SSDMatcher(0.5)(tv_detection.ssd.box_ops.box_iou(gt, anchors))
    assert torch.equal(ours, reference)
    assert (ours == 1).sum() >= 1
    assert torch.equal(ssd_match(torch.zeros(0, 4), anchors), torch.full((300,), -1))


def test_hard_negatives_keep_three_per_positive_of_highest_loss():
    loss = torch.tensor([[0.1, 5.0, 0.3, 4.0, 0.2, 9.0, 0.7, 0.6], [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]])
    positive = torch.zeros(2, 8, dtype=torch.bool)
    positive[0, 5] = True  # the highest loss is a positive: never a negative
    negative = hard_negatives(loss, positive, 3.0)
    assert negative[0].nonzero().flatten().tolist() == [1, 3, 6]
    assert not negative[1].any()  # no positive, no negative


def test_loss_on_the_same_head_outputs_is_torchvisions(ssdlite):
    generator = torch.Generator().manual_seed(2)
    anchors = ssdlite.default_boxes(ssdlite.feature_sizes, torch.device("cpu"), torch.float32)
    outputs = {"bbox_regression": torch.randn(2, len(anchors), 4, generator=generator),
               "cls_logits": 3 * torch.randn(2, len(anchors), 5, generator=generator)}
    targets = [{"boxes": torch.tensor([[10.0, 20.0, 200.0, 150.0], [50.0, 60.0, 80.0, 70.0]]),
                "labels": torch.tensor([1, 4])},
               {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}]
    ours = ssdlite.compute_loss(outputs, anchors, targets)
    reference_model = tv_detection.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=5)
    matched = [ssd_match(t["boxes"], anchors) for t in targets]
    reference = reference_model.compute_loss(targets, outputs, [anchors, anchors], matched)
    for key in ("bbox_regression", "classification"):
        torch.testing.assert_close(ours[key], reference[key], rtol=0, atol=0)


def test_lite_head_with_torchvisions_weights_gives_its_outputs(ssdlite):
    reference = tv_detection.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=5).head
    renamed = torchvision_ssd_to_cvzoo({f"head.{k}": v for k, v in reference.state_dict().items()})
    ssdlite.head.load_state_dict({k[len("head."):]: v for k, v in renamed.items()})
    generator = torch.Generator().manual_seed(3)
    maps = [torch.randn(2, c, h, w, generator=generator)
            for c, (h, w) in zip(ssdlite.backbone.out_channels, ssdlite.feature_sizes)]
    reference.eval()
    ssdlite.head.eval()
    with torch.no_grad():
        ours, expected = ssdlite.head(maps), reference(maps)
    for key in ("bbox_regression", "cls_logits"):
        assert torch.equal(ours[key], expected[key])


def test_an_input_size_too_small_for_the_feature_maps_says_so():
    # SSD300's conv10_2 and conv11_2 are unpadded 3x3 convs: at 200 px the maps run out before them.
    with pytest.raises(ValueError, match=r"input size \(200, 200\) is too small"):
        create_model("ssd300_vgg16", num_classes=2, size=(200, 200))
    # SSDlite's extra blocks are padded: any size gives six maps (the image is resized to it anyway).
    assert len(create_model("ssdlite320_mobilenet_v3_large", num_classes=2, size=(64, 64)).feature_sizes) == 6


def test_any_image_size_is_resized_to_the_fixed_input(ssdlite):
    # SSD has no minimum image size: a 3 x 5 image is resized to 320 x 320 like any other, and its
    # detections come back in its own pixels.
    ssdlite.eval()
    images = torch.zeros(2, 3, 40, 50)
    images[0].uniform_()
    with torch.no_grad():
        tiny, full = ssdlite.predict(images, [(3, 5), (40, 50)], conf_threshold=0.0, max_detections=10)
    assert len(tiny) == 10 and (tiny.boxes[:, 2] <= 5).all() and (tiny.boxes[:, 3] <= 3).all()
    assert (full.boxes[:, 2] <= 50).all() and (full.boxes[:, 3] <= 40).all()


def test_predict_options_filter_classes_merge_classes_and_soft_nms():
    torch.manual_seed(0)
    model = create_model("ssdlite320_mobilenet_v3_large", num_classes=4).eval()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():  # distinct scores: spread batch-norm statistics, sharpened class predictors
        for name, tensor in model.state_dict().items():
            if name.endswith("running_var"):
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=generator))
            elif name.endswith("running_mean"):
                tensor.copy_(0.1 * torch.randn(tensor.shape, generator=generator))
        for predictor in model.head.classification:
            predictor[-1].weight.mul_(5.0)
    images = torch.rand(1, 3, 60, 80, generator=generator)
    with torch.no_grad():
        plain = model.predict(images, conf_threshold=0.0, max_detections=50)[0]
        only = model.predict(images, conf_threshold=0.0, max_detections=50, classes=[0, 3])[0]
        agnostic = model.predict(images, conf_threshold=0.0, iou_threshold=0.3, max_detections=500, agnostic=True)[0]
        soft = model.predict(images, conf_threshold=0.0, max_detections=50, soft_nms="gaussian")[0]
    assert len(plain) == 50 and len(set(plain.labels.tolist())) > 1
    assert len(only) == 50 and set(only.labels.tolist()) <= {0, 3}
    overlap = tv_detection.ssd.box_ops.box_iou(agnostic.boxes, agnostic.boxes).fill_diagonal_(0)
    assert overlap.max() <= 0.3 + 1e-6  # no two boxes overlap beyond the IoU, whatever their classes
    assert len(soft) == 50 and (soft.scores[:-1] >= soft.scores[1:]).all()
