"""CornerNet's parts (Law & Deng 2018): corner pooling against direct formulations, the variant focal loss
and the pull/push loss on hand-computed cases, the targets, decoding of ideal maps, and the paper model's
size."""

from __future__ import annotations

import math

import pytest
import torch

from cvzoo.losses import gaussian_focal_loss
from cvzoo.models import create_model
from cvzoo.models.detection.cornernet.corner_pool import (
    CornerPoolModule,
    bottom_right_pool,
    prefix_max,
    suffix_max,
    top_left_pool,
)
from cvzoo.models.detection.cornernet.decode import decode_corners, heatmap_nms
from cvzoo.models.detection.cornernet.loss import CornerNetLoss, pull_push_loss
from cvzoo.models.detection.cornernet.targets import corner_targets
from cvzoo.ops.heatmaps import gaussian_radius


# --- corner pooling ------------------------------------------------------------------------------
def _naive_top_left(vertical: torch.Tensor, horizontal: torch.Tensor) -> torch.Tensor:
    """The definition (Sec. 3.4), element by element: max below (rows >= i) + max to the right (cols >= j)."""
    out = torch.empty_like(vertical)
    height, width = vertical.shape[-2:]
    for i in range(height):
        for j in range(width):
            out[..., i, j] = vertical[..., i:, j].amax(-1) + horizontal[..., i, j:].amax(-1)
    return out


def _naive_bottom_right(vertical: torch.Tensor, horizontal: torch.Tensor) -> torch.Tensor:
    out = torch.empty_like(vertical)
    height, width = vertical.shape[-2:]
    for i in range(height):
        for j in range(width):
            out[..., i, j] = vertical[..., : i + 1, j].amax(-1) + horizontal[..., i, : j + 1].amax(-1)
    return out


@pytest.mark.parametrize("size", [(1, 1), (5, 7), (8, 8), (13, 3)])
def test_corner_pooling_matches_the_direct_definition(size):
    generator = torch.Generator().manual_seed(0)
    vertical, horizontal = torch.randn(2, 3, *size, generator=generator), torch.randn(2, 3, *size, generator=generator)
    torch.testing.assert_close(top_left_pool(vertical, horizontal), _naive_top_left(vertical, horizontal))
    torch.testing.assert_close(bottom_right_pool(vertical, horizontal), _naive_bottom_right(vertical, horizontal))


@pytest.mark.parametrize("length", [1, 2, 3, 16, 17, 100])
def test_the_exported_doubling_equals_cummax_and_the_direct_maximum(length):
    x = torch.randn(4, length, 5)
    direct_suffix = torch.stack([x[:, i:].amax(1) for i in range(length)], dim=1)
    direct_prefix = torch.stack([x[:, : i + 1].amax(1) for i in range(length)], dim=1)
    for doubling in (True, False):
        torch.testing.assert_close(suffix_max(x, 1, doubling=doubling), direct_suffix, rtol=0, atol=0)
        torch.testing.assert_close(prefix_max(x, 1, doubling=doubling), direct_prefix, rtol=0, atol=0)


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::torch.jit.TracerWarning")
def test_tracing_takes_the_doubling_path():
    traced = torch.jit.trace(lambda v, h: top_left_pool(v, h), (torch.randn(1, 2, 4, 6), torch.randn(1, 2, 4, 6)))
    assert "cummax" not in str(traced.graph)
    vertical, horizontal = torch.randn(1, 2, 4, 6), torch.randn(1, 2, 4, 6)
    torch.testing.assert_close(traced(vertical, horizontal), _naive_top_left(vertical, horizontal))


def test_corner_pool_module_keeps_the_shape_and_rejects_an_unknown_corner():
    module = CornerPoolModule(8, 4, "top_left")
    assert module(torch.randn(2, 8, 6, 10)).shape == (2, 8, 6, 10)
    with pytest.raises(ValueError, match="corner"):
        CornerPoolModule(8, 4, "top_right")


# --- losses --------------------------------------------------------------------------------------
def test_variant_focal_loss_on_a_2x2_heatmap_by_hand():
    # p = [[0.8, 0.5], [0.1, 0.2]], target y = [[1, 0.5], [0, 0]]: one positive, three negatives.
    prob = torch.tensor([[0.8, 0.5], [0.1, 0.2]])
    target = torch.tensor([[1.0, 0.5], [0.0, 0.0]])
    expected = -((1 - 0.8) ** 2 * math.log(0.8)            # positive: (1 - p)^2 log p
                 + (1 - 0.5) ** 4 * 0.5**2 * math.log(0.5)  # near the peak: (1 - y)^4 p^2 log(1 - p)
                 + 0.1**2 * math.log(0.9) + 0.2**2 * math.log(0.8))
    got = gaussian_focal_loss(torch.logit(prob), target)
    assert got.item() == pytest.approx(expected, rel=1e-5)
    # 0.04 * 0.22314 + 0.0625 * 0.25 * 0.69315 + 0.01 * 0.10536 + 0.04 * 0.22314
    assert expected == pytest.approx(0.029735, abs=1e-6)


def test_pull_and_push_of_two_objects_by_hand():
    # Object 1: e_t = 0.0, e_b = 0.4 (mean 0.2); object 2: e_t = 1.0, e_b = 1.2 (mean 1.1).
    # pull = 1/2 [(0.2^2 + 0.2^2) + (0.1^2 + 0.1^2)] = 0.05; |0.2 - 1.1| = 0.9 -> each ordered pair
    # max(0, 1 - 0.9) = 0.1, push = (0.1 + 0.1) / (2 * 1) = 0.1. A padded third slot is ignored.
    tl = torch.tensor([[[0.0], [1.0], [7.0]]])
    br = torch.tensor([[[0.4], [1.2], [-3.0]]])
    mask = torch.tensor([[True, True, False]])
    pull, push = pull_push_loss(tl, br, mask)
    assert pull.item() == pytest.approx(0.05, abs=1e-6)
    assert push.item() == pytest.approx(0.1, abs=1e-6)
    # Means farther apart than the margin are not pushed; one object has nothing to push against.
    pull, push = pull_push_loss(tl, torch.tensor([[[0.0], [1.5], [0.0]]]), mask)
    assert push.item() == 0 and pull.item() == pytest.approx((0 + 2 * 0.25**2) / 2, abs=1e-6)
    _, push = pull_push_loss(tl, br, torch.tensor([[True, False, False]]))
    assert push.item() == 0


# --- targets -------------------------------------------------------------------------------------
def test_corner_targets_place_peaks_offsets_and_indices():
    boxes = torch.tensor([[10.0, 6.0, 50.0, 30.0]])  # stride 4: corners at (2.5, 1.5) and (12.5, 7.5)
    targets = corner_targets([{"boxes": boxes, "labels": torch.tensor([1])}], num_classes=2, map_size=(16, 16),
                             stride=4)
    assert targets.tl_heatmap[0, 1, 1, 2] == 1 and targets.br_heatmap[0, 1, 7, 12] == 1
    assert targets.tl_heatmap[0, 0].sum() == 0
    assert targets.tl_index.tolist() == [[1 * 16 + 2]] and targets.br_index.tolist() == [[7 * 16 + 12]]
    torch.testing.assert_close(targets.tl_offset, torch.tensor([[[0.5, 0.5]]]))
    torch.testing.assert_close(targets.br_offset, torch.tensor([[[0.5, 0.5]]]))
    radius = int(gaussian_radius(6, 10, 0.3))  # the box is 10 x 6 map pixels
    assert radius >= 1
    row = targets.tl_heatmap[0, 1, 1]
    assert row[2 + radius] > 0 and row[2 + radius + 1] == 0


# --- decoding ------------------------------------------------------------------------------------
def _ideal_maps(boxes, labels, embeddings, num_classes=3, size=(32, 40), stride=4):
    """Heatmap logits (+10 at each true corner pixel, -10 elsewhere), embeddings and offsets that
    encode ``boxes`` (xyxy input pixels) exactly."""
    height, width = size
    maps = {name: torch.zeros(1, channels, height, width) for name, channels in
            (("tl_embedding", 1), ("br_embedding", 1), ("tl_offset", 2), ("br_offset", 2))}
    maps["tl_heatmap"] = torch.full((1, num_classes, height, width), -10.0)
    maps["br_heatmap"] = torch.full((1, num_classes, height, width), -10.0)
    for (x1, y1, x2, y2), label, embedding in zip(boxes, labels, embeddings):
        for corner, (x, y) in (("tl", (x1, y1)), ("br", (x2, y2))):
            px, py = int(x // stride), int(y // stride)
            maps[f"{corner}_heatmap"][0, label, py, px] = 10.0
            maps[f"{corner}_embedding"][0, 0, py, px] = embedding
            maps[f"{corner}_offset"][0, :, py, px] = torch.tensor([x / stride - px, y / stride - py])
    return maps


def _decode(maps, k=10):
    return decode_corners(maps["tl_heatmap"], maps["br_heatmap"], maps["tl_embedding"], maps["br_embedding"],
                          maps["tl_offset"], maps["br_offset"], stride=4, k=k)


def test_decoding_recovers_the_boxes_of_ideal_maps():
    boxes = [(10.0, 6.0, 50.0, 30.0), (60.0, 40.0, 150.0, 120.0), (20.0, 70.0, 70.0, 110.0)]
    labels, embeddings = [1, 1, 2], [0.0, 2.0, 4.0]
    decoded = _decode(_ideal_maps(boxes, labels, embeddings))
    assert decoded.shape == (1, 100, 4 + 3)
    scores, classes = decoded[0, :, 4:].max(dim=1)
    kept = scores > 0.5
    assert int(kept.sum()) == 3, "only the true pairs: other pairs differ in class, embedding or geometry"
    order = decoded[0, kept, 0].argsort()
    torch.testing.assert_close(decoded[0, kept, :4][order], torch.tensor(boxes)[[0, 2, 1]], atol=1e-4, rtol=0)
    assert classes[kept][order].tolist() == [1, 2, 1]
    assert scores[kept].min() > 0.99


def test_decoding_rejects_far_embeddings_other_classes_and_inverted_pairs():
    boxes = [(10.0, 6.0, 50.0, 30.0)]
    far = _ideal_maps(boxes, [0], [0.0])
    far["br_embedding"] += 0.6  # embedding distance 0.6 > 0.5
    assert _decode(far)[0, :, 4:].max() < 0.9  # the two peaks (score ~1) never pair
    other = _ideal_maps(boxes, [0], [0.0])
    other["br_heatmap"] = other["br_heatmap"][:, [1, 0, 2]]  # the bottom-right corner now says class 1
    assert _decode(other)[0, :, 4:].max() < 0.9
    # A bottom-right peak above-left of the top-left one.
    inverted = _ideal_maps([(50.0, 30.0, 10.0, 6.0)], [0], [0.0])
    assert _decode(inverted)[0, :, 4:].max() < 0.9


def test_heatmap_nms_keeps_local_maxima_only():
    scores = torch.tensor([[[[0.1, 0.9, 0.8], [0.2, 0.3, 0.1], [0.7, 0.1, 0.05]]]])
    kept = heatmap_nms(scores)
    assert kept.nonzero()[:, 2:].tolist() == [[0, 1], [2, 0]]


def test_the_loss_of_ideal_maps_is_far_below_that_of_a_fresh_model():
    boxes = [(10.0, 6.0, 50.0, 30.0), (60.0, 40.0, 150.0, 120.0)]
    labels = [1, 2]
    targets = corner_targets([{"boxes": torch.tensor(boxes), "labels": torch.tensor(labels)}], 3, (32, 40), 4)
    ideal = _ideal_maps(boxes, labels, [0.0, 2.0])
    noisy = {name: torch.randn_like(value) for name, value in ideal.items()}
    criterion = CornerNetLoss()
    good, bad = criterion([ideal], targets), criterion([noisy], targets)
    assert good["pull"] == 0 and good["push"] == 0 and good["offset"] < 1e-10
    assert good["loss"] < 0.05 * bad["loss"]


def test_the_paper_model_has_the_papers_parameter_count():
    # CornerNet with hourglass-104 has ~201M parameters (Law & Deng 2018, Sec. 4.1 / Table 5 footnote).
    with torch.device("meta"):  # shapes only: no 800 MB of weights to initialise
        model = create_model("cornernet_hourglass104", num_classes=80)
    count = sum(p.numel() for p in model.parameters())
    assert count == 201_035_212 and abs(count - 201e6) / 201e6 < 0.01, count
    assert model.strides == (4, 8, 16, 32, 64, 128)
