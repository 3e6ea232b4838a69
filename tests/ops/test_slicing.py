"""Tiles for sliced inference and the merge of their detections (cvzoo.ops.slicing)."""

from __future__ import annotations

import pytest
import torch

from cvzoo.ops.slicing import merge_tile_detections, tile_windows


def test_windows_cover_the_image_with_at_least_the_overlap_asked_for():
    windows = tile_windows(1035, 1249, 640, 0.2)
    assert {w[0] for w in windows} == {0, 304, 609} and {w[1] for w in windows} == {0, 395}
    assert all(x1 - x0 == 640 and y1 - y0 == 640 for x0, y0, x1, y1 in windows)
    covered = torch.zeros(1035, 1249, dtype=torch.bool)
    for x0, y0, x1, y1 in windows:
        covered[y0:y1, x0:x1] = True
    assert covered.all()
    xs = sorted({w[0] for w in tile_windows(100, 1000, 200, 0.25)})
    assert xs[0] == 0 and xs[-1] == 800 and all(b - a <= 150 for a, b in zip(xs, xs[1:]))
    assert tile_windows(50, 60, 64) == [(0, 0, 60, 50)]  # smaller than a tile: one window
    for tile, overlap in ((0, 0.2), (64, 1.0), (64, -0.1)):
        with pytest.raises(ValueError):
            tile_windows(100, 100, tile, overlap)


def test_merge_shifts_by_the_window_and_keeps_the_better_copy_of_an_object():
    # The same object seen by two tiles (offsets 0 and 50) and once more of another class.
    left = (torch.tensor([[60.0, 10, 90, 40]]), torch.tensor([0.6]), torch.tensor([1]))
    right = (torch.tensor([[10.0, 10, 40, 40], [12.0, 12, 38, 38]]), torch.tensor([0.9, 0.8]), torch.tensor([1, 2]))
    boxes, scores, labels = merge_tile_detections([left, right], [(0, 0), (50, 0)])
    torch.testing.assert_close(boxes, torch.tensor([[60.0, 10, 90, 40], [62.0, 12, 88, 38]]))
    assert scores.tolist() == pytest.approx([0.9, 0.8]) and labels.tolist() == [1, 2]
    assert len(merge_tile_detections([left, right], [(0, 0), (50, 0)], max_det=1)[0]) == 1
    assert len(merge_tile_detections([], [])[0]) == 0
    with pytest.raises(ValueError, match="2 detection parts for 1 window"):
        merge_tile_detections([left, right], [(0, 0)])
