"""RT-DETR's parts on hand-made cases: deformable sampling at cell centres, the denoising groups (noise bounds,
padding, attention mask) and their loss, decoding without NMS, and the documented errors (more objects than
queries, a size that is not a multiple of 32, more queries than encoder tokens, NMS settings)."""

from __future__ import annotations

import pytest
import torch

from cvzoo.models import create_model
from cvzoo.models.detection.base import TargetError
from cvzoo.models.detection.one_pass import DetectSettings
from cvzoo.models.detection.rtdetr.criterion import RTDETRCriterion
from cvzoo.models.detection.rtdetr.deformable import MSDeformableAttention, deformable_sample
from cvzoo.models.detection.rtdetr.denoising import denoising_groups
from cvzoo.ops import box_convert

SMALL = {"hidden_dim": 32, "num_heads": 2, "encoder_ffn_dim": 64, "decoder_ffn_dim": 64, "num_blocks": 1,
         "decoder_layers": 2, "num_queries": 4, "num_denoising": 10, "size": 64}


@pytest.fixture(scope="module")
def rtdetr():
    torch.manual_seed(0)
    return create_model("rtdetr_r18vd_tiny", num_classes=3, **SMALL)


def _targets() -> list[dict[str, torch.Tensor]]:
    """Normalised cxcywh: three central objects in the first image, one in the second."""
    boxes = torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.4, 0.6, 0.1, 0.3], [0.6, 0.4, 0.3, 0.1]])
    return [{"labels": torch.tensor([0, 1, 2]), "boxes": boxes}, {"labels": torch.tensor([1]), "boxes": boxes[:1]}]


def test_deformable_sampling_at_a_cell_centre_reads_that_cell():
    value = torch.arange(6.0).view(1, 6, 1, 1)  # one level of 2 rows x 3 columns, one head of width 1
    # The centre of row 1, column 2 is at ((2 + 0.5) / 3, (1 + 0.5) / 2); halfway between columns 0 and 1 of
    # row 0 the sample is their mean.
    locations = torch.tensor([[2.5 / 3, 0.75], [1.0 / 3, 0.25]]).view(1, 2, 1, 1, 2)
    out = deformable_sample(value, [(2, 3)], locations, torch.ones(1, 2, 1, 1), [1])
    torch.testing.assert_close(out.flatten(), torch.tensor([5.0, 0.5]))
    # RT-DETRv2's discrete sampling reads the cell int(x W + 0.5), int(y H + 0.5): (3, 2) clamped to (2, 1),
    # then (1, 1) -> cell 4.
    discrete = deformable_sample(value, [(2, 3)], locations, torch.ones(1, 2, 1, 1), [1], method="discrete")
    torch.testing.assert_close(discrete.flatten(), torch.tensor([5.0, 4.0]))


def test_deformable_attention_with_points_per_level():
    """RT-DETRv2's form: a number of points per level; the offsets' unit is 1 / P_l of offset_scale x the box."""
    attention = MSDeformableAttention(dim=8, num_heads=2, num_levels=2, num_points=(3, 1), offset_scale=0.5)
    assert attention.sampling_offsets.out_features == 2 * 4 * 2 and attention.attention_weights.out_features == 2 * 4
    torch.testing.assert_close(attention.point_scale, torch.tensor([1 / 3, 1 / 3, 1 / 3, 1.0]))
    memory = torch.randn(1, 4 * 4 + 2 * 2, 8)
    out = attention(torch.randn(1, 5, 8), torch.rand(1, 5, 4), memory, [(4, 4), (2, 2)])
    assert out.shape == (1, 5, 8) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="num_points gives 3 levels"):
        MSDeformableAttention(dim=8, num_heads=2, num_levels=2, num_points=(1, 2, 3))


def test_denoising_groups_noise_padding_and_mask():
    torch.manual_seed(0)
    embed = torch.nn.Embedding(4, 8, padding_idx=3)
    groups = denoising_groups(_targets(), embed, num_classes=3, num_queries=5, num_denoising=10,
                              label_noise_ratio=0.0, box_noise_scale=0.4)
    most, count = 3, 3  # the most objects of an image, and 10 // 3 groups
    total = 2 * most * count
    assert groups.num_groups == count and groups.num_queries == total
    assert groups.queries.shape == (2, total, 8) and groups.reference_logits.shape == (2, total, 4)
    # Positives: the first M slots of each group of 2M, the image's own objects only.
    assert groups.positives[0].tolist() == [0, 1, 2, 6, 7, 8, 12, 13, 14]
    assert groups.positives[1].tolist() == [0, 6, 12]
    # Labels without noise: a positive's query is its label's embedding; the second image's missing objects
    # are "no object" (the zero padding row).
    torch.testing.assert_close(groups.queries[0, 7], embed.weight[1])
    assert not groups.queries[1, 1].any() and not groups.queries[1, 2].any()
    # Box noise: corners move by less than 0.4 x half the side for positives, by 1 to 2 times that for
    # negatives (a scale under 0.5 keeps a negative's corners from crossing, which would leave no box).
    truth = box_convert(_targets()[0]["boxes"], "cxcywh", "xyxy")
    sides = _targets()[0]["boxes"][:, 2:].repeat(1, 2)
    noisy = box_convert(groups.reference_logits[0].sigmoid(), "cxcywh", "xyxy").view(count, 2, most, 4)
    moved = (noisy - truth).abs() / sides
    assert (moved[:, 0] < 0.2 + 1e-4).all() and (moved[:, 1] > 0.2 - 1e-4).all() and (moved[:, 1] < 0.4 + 1e-4).all()
    # The mask: matching queries never see denoising ones, each group sees itself and the matching queries.
    mask = groups.attn_mask
    assert mask.shape == (total + 5, total + 5)
    assert not mask[total:, :total].any() and mask[:, total:].all()
    for g in range(count):
        rows = slice(2 * most * g, 2 * most * (g + 1))
        assert mask[rows, rows].all() and mask[rows, :total].sum() == (2 * most) ** 2


def test_denoising_never_reaches_the_matching_queries_and_adds_its_loss(rtdetr):
    rtdetr.train()
    images = torch.rand(2, 3, 64, 64)
    targets = _targets()
    torch.manual_seed(1)
    with_dn = rtdetr.forward_network(images, targets)
    alone = rtdetr.forward_network(images)
    assert with_dn["denoising"] is not None and alone["denoising"] is None
    dn_logits, dn_boxes, groups = with_dn["denoising"]
    assert dn_logits.shape == (2, 2, groups.num_queries, 3) and dn_boxes.shape == (2, 2, groups.num_queries, 4)
    # The attention mask keeps the matching queries' predictions what they are without denoising queries.
    torch.testing.assert_close(with_dn["logits"], alone["logits"], rtol=0, atol=1e-5)
    torch.testing.assert_close(with_dn["boxes"], alone["boxes"], rtol=0, atol=1e-5)
    pixels = [{"labels": t["labels"], "boxes": box_convert(t["boxes"], "cxcywh", "xyxy") * 64} for t in targets]
    losses = rtdetr(images, pixels)
    assert losses["loss_dn"] > 0 and "loss_aux" in losses
    parts = losses["loss"] - losses["loss_dn"] - losses["loss_aux"]
    expected = losses["loss_vfl"] + 5 * losses["loss_bbox"] + 2 * losses["loss_giou"]
    torch.testing.assert_close(parts.detach(), expected, rtol=1e-4, atol=1e-5)


def test_decode_takes_the_top_query_class_pairs_without_nms(rtdetr):
    logits = torch.full((1, 3, 2), -10.0)
    logits[0, 0, 0], logits[0, 0, 1] = 3.0, 2.0  # one query, two classes: two detections of the same box
    logits[0, 2, 1] = 1.0
    boxes = torch.tensor([[[0.5, 0.5, 0.5, 0.5], [0.1, 0.1, 0.1, 0.1], [0.25, 0.5, 0.5, 1.0]]])
    (result,) = rtdetr.decode(logits, boxes, [(40, 100)], DetectSettings(score_thresh=0.5, detections_per_img=10))
    assert result.labels.tolist() == [0, 1, 1]
    torch.testing.assert_close(result.scores, torch.sigmoid(torch.tensor([3.0, 2.0, 1.0])))
    torch.testing.assert_close(result.boxes[0], torch.tensor([25.0, 10.0, 75.0, 30.0]))  # pixels of 100 x 40
    torch.testing.assert_close(result.boxes[1], result.boxes[0])
    torch.testing.assert_close(result.boxes[2], torch.tensor([0.0, 0.0, 50.0, 40.0]))
    (capped,) = rtdetr.decode(logits, boxes, [(40, 100)], DetectSettings(score_thresh=0.5, detections_per_img=2))
    assert capped.labels.tolist() == [0, 1]
    (only,) = rtdetr.decode(logits, boxes, [(40, 100)], DetectSettings(score_thresh=0.5, classes=[1]))
    assert only.labels.tolist() == [1, 1]


def test_more_objects_than_queries_is_an_error_naming_the_image_and_both_counts(rtdetr):
    images = torch.rand(2, 3, 64, 64)
    crowded = {"boxes": torch.tensor([[4.0 * i, 4.0 * i, 4.0 * i + 8, 4.0 * i + 8] for i in range(5)]),
               "labels": torch.zeros(5, dtype=torch.int64)}
    few = {"boxes": torch.tensor([[2.0, 2.0, 30.0, 30.0]]), "labels": torch.tensor([1])}
    rtdetr.train()
    with pytest.raises(TargetError, match=r"image 1 of the batch has 5 objects but the model predicts 4 \(num_queries\)"):
        rtdetr(images, [few, crowded])


def test_an_empty_image_trains_every_score_towards_zero():
    criterion = RTDETRCriterion(num_classes=3)
    logits = torch.randn(2, 1, 4, 3, requires_grad=True)  # two decoder layers, one image, four queries
    boxes = torch.rand(2, 1, 4, 4, requires_grad=True)
    empty = [{"labels": torch.zeros(0, dtype=torch.int64), "boxes": torch.zeros(0, 4)}]
    losses = criterion(logits, boxes, empty)
    # Every score is a negative: 0.75 p^2 BCE(x, 0), summed over the 4 x 3 scores (one object at least).
    p = logits[-1].detach().sigmoid()
    expected = (0.75 * p ** 2 * -torch.log1p(-p)).sum()
    torch.testing.assert_close(losses["loss_vfl"], expected)
    assert losses["loss_bbox"] == 0 and losses["loss_giou"] == 0
    losses["loss"].backward()
    assert logits.grad.abs().sum() > 0 and torch.isfinite(logits.grad).all()


def test_bad_sizes_and_nms_settings_are_errors(rtdetr):
    with pytest.raises(ValueError, match="multiples of 32"):
        create_model("rtdetr_r18vd_tiny", num_classes=3, size=100)
    narrow = create_model("rtdetr_r18vd_tiny", num_classes=3, **{**SMALL, "num_queries": 100}).eval()
    with pytest.raises(ValueError, match=r"100 queries \(num_queries\) from 84 encoder tokens"):
        narrow.predict(torch.rand(1, 3, 64, 64))
    rtdetr.eval()
    with pytest.raises(ValueError, match="without NMS: iou_threshold=0.5"):
        rtdetr.predict(torch.rand(1, 3, 64, 64), iou_threshold=0.5)
