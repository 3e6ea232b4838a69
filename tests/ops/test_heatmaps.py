"""Gaussian-penalised heatmaps (CornerNet, Law & Deng 2018, Sec. 3.2): the radius rule and the bumps."""

from __future__ import annotations

import math

import pytest
import torch

from cvzoo.ops.heatmaps import draw_gaussian, gaussian_kernel, gaussian_radius


def _iou(a, b):
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_radius_of_a_10x10_box_at_iou_0_3_by_hand():
    # Shrunk box: (10 - 2r)^2 / 100 = 0.3 -> r = (10 - sqrt(30)) / 2 = 2.2614 (the smallest of the three cases;
    # shifted: r^2 - 20 r + 100 * 0.7 / 1.3 = 0 -> 3.2064; grown: 100 / (10 + 2r)^2 = 0.3 -> 4.1287).
    assert gaussian_radius(10, 10, 0.3) == pytest.approx((10 - math.sqrt(30)) / 2, abs=1e-9)
    assert (10 - math.sqrt(30)) / 2 == pytest.approx(2.2614, abs=1e-4)


def test_radius_of_a_wide_box_at_iou_0_7_by_hand():
    # w = 40, h = 10, t = 0.7.  shrunk: 4r^2 - 100 r + 120 = 0 -> r = (100 - sqrt(10000 - 1920)) / 8 = 1.2639;
    # grown: 2.8 r^2 + 70 r - 120 = 0 -> r = (-70 + sqrt(4900 + 1344)) / 5.6 = 1.6105;
    # shifted: r^2 - 50 r + 400 * 0.3 / 1.7 = 0 -> r = (50 - sqrt(2500 - 282.35)) / 2 = 1.4541.
    assert gaussian_radius(10, 40, 0.7) == pytest.approx((100 - math.sqrt(8080)) / 8, abs=1e-9)
    assert gaussian_radius(10, 40, 0.7) == pytest.approx(1.2639, abs=1e-4)


@pytest.mark.parametrize("height, width, t", [(10, 10, 0.3), (10, 40, 0.7), (7, 3, 0.5), (100, 60, 0.3)])
def test_corners_moved_by_the_radius_give_exactly_the_iou_in_the_worst_case(height, width, t):
    r = gaussian_radius(height, width, t)
    box = (0.0, 0.0, float(width), float(height))
    moved = [(r, r, width + r, height + r), (r, r, width - r, height - r), (-r, -r, width + r, height + r)]
    ious = [_iou(box, m) for m in moved]
    assert min(ious) == pytest.approx(t, abs=1e-9), "the radius is the rule's limit"
    assert all(iou >= t - 1e-9 for iou in ious)


def test_radius_rejects_an_overlap_outside_0_1_and_is_0_for_an_empty_box():
    with pytest.raises(ValueError, match="min_overlap"):
        gaussian_radius(10, 10, 1.0)
    assert gaussian_radius(0, 10) == 0.0


def test_gaussian_kernel_has_sigma_a_sixth_of_the_diameter():
    kernel = gaussian_kernel(3)
    sigma = 7 / 6
    assert kernel.shape == (7, 7) and kernel[3, 3] == 1
    assert kernel[3, 5].item() == pytest.approx(math.exp(-4 / (2 * sigma**2)), rel=1e-6)
    assert kernel[0, 0].item() == pytest.approx(math.exp(-18 / (2 * sigma**2)), rel=1e-5)


def test_draw_gaussian_clips_at_the_border_and_keeps_the_maximum():
    heatmap = torch.zeros(6, 8)
    draw_gaussian(heatmap, 0, 1, 2)
    kernel = gaussian_kernel(2)
    torch.testing.assert_close(heatmap[:4, :3], kernel[1:, 2:])
    assert heatmap[:, 3:].abs().sum() == 0 and heatmap[4:].abs().sum() == 0
    draw_gaussian(heatmap, 1, 1, 0)  # a radius-0 bump: a single 1 next to the first peak
    assert heatmap[1, 1] == 1 and heatmap[1, 0] == 1
    assert heatmap[2, 1] == kernel[3, 3]  # untouched: the maximum of the two
    with pytest.raises(ValueError, match="outside"):
        draw_gaussian(heatmap, 8, 0, 1)
