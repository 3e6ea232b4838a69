"""RetinaNet / FCOS parts against torchvision's: anchors, heads, FCOS's location assignment and the
per-level top-k post-processing, each alone (the whole models: test_onestage_parity.py)."""

from __future__ import annotations

import pytest
import torch

from cvzoo.models.detection.one_pass import DetectSettings
from cvzoo.models.detection.onestage.common import HeadBranch, select_top_detections
from cvzoo.models.detection.onestage.fcos import FCOS, FCOSHead
from cvzoo.models.detection.onestage.remap import torchvision_onestage_to_cvzoo
from cvzoo.models.detection.onestage.retinanet import RetinaNet, RetinaNetHead, retinanet_anchor_sizes
from cvzoo.models.necks import FeaturePyramidNetwork
from cvzoo.ops import AnchorGenerator, flatten_anchor_maps

tv_detection = pytest.importorskip("torchvision.models.detection")
from torchvision.models.detection import fcos as tv_fcos  # noqa: E402
from torchvision.models.detection import retinanet as tv_retinanet  # noqa: E402
from torchvision.models.detection.image_list import ImageList  # noqa: E402

# Five pyramid levels of a 96 x 160 padded batch (strides 8 .. 128, torchvision's sizes for it).
FEATURE_SIZES = [(12, 20), (6, 10), (3, 5), (2, 3), (1, 2)]
BATCH_SIZE = (96, 160)


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def _features(channels: int = 64, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(2, channels, h, w, generator=generator) for h, w in FEATURE_SIZES]


def _tv_anchors(generator, features: list[torch.Tensor]) -> torch.Tensor:
    images = ImageList(torch.zeros(2, 3, *BATCH_SIZE), [BATCH_SIZE, (80, 120)])
    return generator(images, features)[0]


def test_retinanet_anchors_are_torchvisions():
    assert retinanet_anchor_sizes()[0] == (32, 40, 50)
    ours = AnchorGenerator(retinanet_anchor_sizes(), [(0.5, 1.0, 2.0)] * 5)
    features = _features(8)
    expected = _tv_anchors(tv_retinanet._default_anchorgen(), features)
    got = ours(BATCH_SIZE, [f.shape[-2:] for f in features])
    assert got.shape == expected.shape == (9 * sum(h * w for h, w in FEATURE_SIZES), 4)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


@pytest.mark.parametrize("group_norm", [False, True])
def test_retinanet_head_matches_torchvision(group_norm):
    torch.manual_seed(0)
    from functools import partial

    norm = partial(torch.nn.GroupNorm, 32) if group_norm else None
    reference = tv_retinanet.RetinaNetHead(64, 9, 5, norm_layer=norm)
    ours = RetinaNetHead(64, 9, 5, group_norm=group_norm)
    state = {f"head.{k}": v for k, v in reference.state_dict().items()}
    ours.load_state_dict({k[len("head."):]: v for k, v in torchvision_onestage_to_cvzoo(state).items()})
    features = _features()
    expected = reference(features)
    got = ours(features)
    torch.testing.assert_close(flatten_anchor_maps(got["cls_logits"], 5), expected["cls_logits"])
    torch.testing.assert_close(flatten_anchor_maps(got["bbox_regression"], 4), expected["bbox_regression"])


def test_fcos_head_matches_torchvision():
    torch.manual_seed(0)
    reference = tv_fcos.FCOSHead(64, 1, 5)
    ours = FCOSHead(64, 5)
    state = {f"head.{k}": v for k, v in reference.state_dict().items()}
    ours.load_state_dict({k[len("head."):]: v for k, v in torchvision_onestage_to_cvzoo(state).items()})
    with torch.no_grad():  # non-zero distances: the ReLU then matters
        ours.regression.predictions["bbox_regression"].bias.normal_()
        reference.regression_head.bbox_reg.bias.copy_(ours.regression.predictions["bbox_regression"].bias)
    features = _features()
    expected = reference(features)
    got = ours(features)
    for name, values in (("cls_logits", 5), ("bbox_regression", 4), ("bbox_ctrness", 1)):
        torch.testing.assert_close(flatten_anchor_maps(got[name], values), expected[name], msg=name)
    assert (expected["bbox_regression"] == 0).any() and (expected["bbox_regression"] > 0).any()


def test_head_branch_conv_bias_follows_the_norm():
    assert HeadBranch(32, 2, {"x": 4}).tower[0].conv.bias is not None
    assert HeadBranch(32, 2, {"x": 4}, group_norm=True).tower[0].conv.bias is None  # RetinaNet v2
    assert HeadBranch(32, 2, {"x": 4}, group_norm=True, conv_bias=True).tower[0].conv.bias is not None  # FCOS


def test_p6_from_c5_is_torchvisions_last_level_p6p7():
    from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork as TVFPN
    from torchvision.ops.feature_pyramid_network import LastLevelP6P7

    torch.manual_seed(0)
    channels = [16, 32, 64]
    for extra, p6_in in (("p6p7", 32), ("p6p7_c5", 64)):
        reference = TVFPN(channels, 32, extra_blocks=LastLevelP6P7(p6_in, 32))
        ours = FeaturePyramidNetwork(channels, 32, extra_block=extra)
        state = {f"backbone.fpn.{k}": v for k, v in reference.state_dict().items()}
        ours.load_state_dict({k[len("backbone.fpn."):]: v for k, v in torchvision_onestage_to_cvzoo(
            {**state, "head.classification_head.cls_logits.weight": torch.zeros(1)}).items()
            if k.startswith("backbone.fpn.")})
        maps = [torch.randn(1, c, 32 // 2**i, 40 // 2**i) for i, c in enumerate(channels)]
        expected = list(reference({str(i): m for i, m in enumerate(maps)}).values())
        got = ours(maps)
        assert len(got) == len(expected) == 5
        for a, b in zip(got, expected):
            torch.testing.assert_close(a, b)


def test_fcos_assignment_is_torchvisions_at_the_boundaries():
    """Boxes on whole pixels put maximal distances exactly on the level bounds (64, 128) and locations on box
    edges and centre-region edges; two boxes whose areas (259 and 256 px^2) tie as float32 ``1e8 - area``
    compete (torchvision gives their locations to the first, a plain smallest-area rule to the second)."""
    features = _features(8)
    anchors = _tv_anchors(tv_fcos.AnchorGenerator(((8,), (16,), (32,), (64,), (128,)), ((1.0,),) * 5), features)
    counts = [h * w for h, w in FEATURE_SIZES]
    boxes = torch.tensor([[0.0, 0.0, 64.0, 64.0], [16.0, 16.0, 80.0, 80.0], [32.0, 8.0, 160.0, 96.0],
                          [40.0, 24.0, 56.0, 40.1875], [40.0, 24.0, 56.0, 40.0], [8.0, 40.0, 136.0, 88.0],
                          [0.0, 0.0, 160.0, 96.0]])
    targets = [{"boxes": boxes, "labels": torch.arange(len(boxes))}]
    recorded = {}

    class Recorder(torch.nn.Module):
        def compute_loss(self, targets, head_outputs, anchors, matched_idxs):
            recorded["matched"] = matched_idxs[0]
            return {}

    reference = tv_fcos.FCOS.__new__(tv_fcos.FCOS)
    torch.nn.Module.__init__(reference)
    reference.center_sampling_radius = 1.5
    reference.head = Recorder()
    reference.compute_loss(targets, {}, [anchors], counts)
    model = FCOS(num_classes=7, backbone="resnet18", min_size=96, max_size=160)
    centres = (anchors[:, :2] + anchors[:, 2:]) / 2
    from cvzoo.ops import fcos_assign, fcos_size_ranges

    sides = anchors[:, 2] - anchors[:, 0]
    ranges = fcos_size_ranges(sides, (8, 16, 32, 64, 128), (64.0, 128.0, 256.0, 512.0))
    got = fcos_assign(centres, sides, boxes, ranges, model.center_sampling_radius)
    assert (recorded["matched"] >= 0).sum() > 20
    torch.testing.assert_close(got, recorded["matched"], rtol=0, atol=0)


def _tv_postprocess(family, head_outputs, anchors, counts, image_size, **settings):
    model = family.__new__(family)
    torch.nn.Module.__init__(model)
    for key, value in settings.items():
        setattr(model, key, value)
    from torchvision.models.detection import _utils as det_utils

    model.box_coder = (det_utils.BoxLinearCoder(True) if family is tv_fcos.FCOS
                       else det_utils.BoxCoder((1.0, 1.0, 1.0, 1.0)))
    split = {k: list(v.split(counts, dim=1)) for k, v in head_outputs.items()}
    return model.postprocess_detections(split, [list(anchors.split(counts))], [image_size])[0]


@pytest.mark.parametrize("family", ["retinanet", "fcos"])
def test_top_k_postprocessing_matches_torchvision(family):
    generator = torch.Generator().manual_seed(3)
    features = _features(8)
    if family == "retinanet":
        generator_tv, per_cell, ours = tv_retinanet._default_anchorgen(), 9, RetinaNet
        settings = {"score_thresh": 0.05, "nms_thresh": 0.5, "detections_per_img": 300, "topk_candidates": 50}
    else:
        generator_tv, per_cell, ours = tv_fcos.AnchorGenerator(((8,), (16,), (32,), (64,), (128,)), ((1.0,),) * 5), 1, FCOS
        settings = {"score_thresh": 0.2, "nms_thresh": 0.6, "detections_per_img": 100, "topk_candidates": 50}
    anchors = _tv_anchors(generator_tv, features)
    counts = [h * w * per_cell for h, w in FEATURE_SIZES]
    total = sum(counts)
    outputs = {"cls_logits": torch.randn(1, total, 6, generator=generator) * 2 - 2,
               "bbox_regression": torch.rand(1, total, 4, generator=generator) * (0.5 if family == "fcos" else 0.3)}
    if family == "fcos":
        outputs["bbox_ctrness"] = torch.randn(1, total, 1, generator=generator)
    image_size = (90, 150)
    expected = _tv_postprocess(tv_fcos.FCOS if family == "fcos" else tv_retinanet.RetinaNet, outputs, anchors,
                               counts, image_size, **settings)
    model = ours.__new__(ours)  # only level_scores / decode are needed: no backbone
    torch.nn.Module.__init__(model)
    from cvzoo.ops import DeltaBoxCoder

    model.box_coder = DeltaBoxCoder((1.0, 1.0, 1.0, 1.0))
    levels = [dict(zip(outputs, parts)) for parts in zip(*(o[0].split(counts) for o in outputs.values()))]
    got = select_top_detections([model.level_scores(level) for level in levels],
                                [level["bbox_regression"] for level in levels], list(anchors.split(counts)),
                                model.decode, image_size,
                                DetectSettings(settings["score_thresh"], settings["nms_thresh"],
                                               settings["detections_per_img"]), settings["topk_candidates"])
    assert len(expected["boxes"]) > 20
    torch.testing.assert_close(got.boxes, expected["boxes"])
    torch.testing.assert_close(got.scores, expected["scores"])
    torch.testing.assert_close(got.labels, expected["labels"])
    # The class filter: only the wanted class, and its candidates are not crowded out of the per-level top-k.
    only = select_top_detections([model.level_scores(level) for level in levels],
                                 [level["bbox_regression"] for level in levels], list(anchors.split(counts)),
                                 model.decode, image_size,
                                 DetectSettings(settings["score_thresh"], settings["nms_thresh"], 1000, classes=[2]),
                                 settings["topk_candidates"])
    assert len(only) > 0 and (only.labels == 2).all()


def test_predict_options_soft_nms_agnostic_and_limits():
    torch.manual_seed(0)
    model = FCOS(num_classes=3, backbone="resnet18", min_size=64, max_size=96, score_thresh=0.0).eval()
    with torch.no_grad():
        model.head.classification.predictions["cls_logits"].bias.zero_()  # scores near 0.5: many candidates
        images = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(1))
        hard = model.predict(images, max_detections=50)[0]
        soft = model.predict(images, soft_nms="gaussian", max_detections=50)[0]
        agnostic = model.predict(images, agnostic=True, iou_threshold=0.3, max_detections=1000)[0]
        per_class = model.predict(images, iou_threshold=0.3, max_detections=1000)[0]
    assert len(hard) == len(soft) == 50
    assert (soft.scores[:-1] >= soft.scores[1:]).all() and (hard.scores[:-1] >= hard.scores[1:]).all()
    assert not torch.equal(soft.scores, hard.scores)  # Soft-NMS decays the overlapping neighbours' scores
    assert 0 < len(agnostic) < len(per_class)  # one NMS over all classes suppresses across them
    with pytest.raises(ValueError, match="image size"):
        model.predict(images, [(70, 96)])


@pytest.mark.parametrize(("name", "published"), [("retinanet_resnet50_fpn", 34_014_999),
                                                 ("retinanet_resnet50_fpn_v2", 38_198_935),
                                                 ("fcos_resnet50_fpn", 32_269_600)])
def test_parameter_counts_are_torchvisions_published_ones(name, published):
    """The ``num_params`` of torchvision's COCO weights, counted as its builders build them for those weights
    (frozen batch norms hold buffers, not parameters, in v1 and FCOS)."""
    from cvzoo.models import create_model

    model = create_model(name, num_classes=91, fine_tune=True)
    assert sum(p.numel() for p in model.parameters()) == published
