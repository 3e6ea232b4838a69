import pytest
import torch

from cvzoo.ops import ShapeError, yolo_v3_assign, yolo_v5_build_targets

COCO_ANCHORS = torch.tensor(
    [[[10, 13], [16, 30], [33, 23]], [[30, 61], [62, 45], [59, 119]], [[116, 90], [156, 198], [373, 326]]],
    dtype=torch.float32,
)
STRIDES = [8, 16, 32]
SIZES = [(8, 8), (4, 4), (2, 2)]  # a 64 x 64 input


def test_v3_best_anchor_and_ignore():
    gt = torch.tensor([[20.0, 36.0, 30.0, 60.0]])
    # Shape IoUs written out: (30, 61) -> 1800/1830 is best; (62, 45) -> 1350/3240 = 0.417;
    # (33, 23) -> 690/1869 = 0.369.
    out = yolo_v3_assign(gt, torch.tensor([0]), COCO_ANCHORS, STRIDES, SIZES, batch_size=2, ignore_thresh=0.4)
    assert [t.positive.shape for t in out] == [(2, 3, 8, 8), (2, 3, 4, 4), (2, 3, 2, 2)]
    assert out[1].positive.sum() == 1 and out[1].positive[0, 0, 2, 1]  # cell (x=20//16, y=36//16)
    assert out[1].gt_index[0, 0, 2, 1] == 0 and (out[1].gt_index[~out[1].positive] == -1).all()
    assert out[0].positive.sum() == 0 and out[2].positive.sum() == 0
    assert out[1].ignore.sum() == 1 and out[1].ignore[0, 1, 2, 1]
    assert sum(int(t.ignore.sum()) for t in out) == 1
    out_default = yolo_v3_assign(gt, torch.tensor([0]), COCO_ANCHORS, STRIDES, SIZES, batch_size=2)
    assert sum(int(t.ignore.sum()) for t in out_default) == 0  # nothing else above 0.5


def test_v3_collisions_batches_and_invariants():
    # Two GTs of image 1 in one cell wanting one anchor: the better-shaped one (index 0) wins.
    gts = torch.tensor([[22.0, 38.0, 30.0, 61.0], [20.0, 36.0, 30.0, 60.0], [50.0, 10.0, 12.0, 12.0]])
    out = yolo_v3_assign(gts, torch.tensor([1, 1, 0]), COCO_ANCHORS, STRIDES, SIZES, batch_size=2)
    assert out[1].gt_index[1, 0, 2, 1] == 0
    assert out[0].positive[0, 0, 1, 6]  # GT 2: 12x12 best matches (10, 13) at (x=6, y=1)
    generator = torch.Generator().manual_seed(0)
    centres = torch.rand(40, 2, generator=generator) * 64
    sizes = torch.rand(40, 2, generator=generator) * 200 + 4
    batch = torch.randint(0, 3, (40,), generator=generator)
    out = yolo_v3_assign(torch.cat((centres, sizes), 1), batch, COCO_ANCHORS, STRIDES, SIZES, batch_size=3)
    assigned = torch.cat([t.gt_index[t.positive] for t in out])
    assert assigned.unique().numel() == assigned.numel()  # a GT is positive at most once
    for t in out:
        assert not (t.positive & t.ignore).any()
        positive_batch = torch.where(t.positive)[0]
        assert torch.equal(batch[t.gt_index[t.positive]], positive_batch)


def test_v5_neighbours_and_ratio_rule():
    anchors = torch.tensor([[[8.0, 8.0], [80.0, 80.0]]])
    # grid centre (2.25, 5.75): nearer to the left and to the lower neighbour
    gt = torch.tensor([[18.0, 46.0, 16.0, 16.0], [3.0, 3.0, 16.0, 16.0]])
    (out,) = yolo_v5_build_targets(gt, torch.tensor([0, 1]), anchors, [8], [(8, 8)], batch_size=2)
    # 80 px anchor: ratio 5 > anchor_t = 4 -> never matched
    assert (out.anchor_idx == 0).all()
    first = out.gt_index == 0
    cells = sorted(zip(out.grid_x[first].tolist(), out.grid_y[first].tolist()))
    assert cells == [(1, 5), (2, 5), (2, 6)]
    left = first & (out.grid_x == 1)
    torch.testing.assert_close(out.box[left], torch.tensor([[1.25, 0.75, 2.0, 2.0]]))
    assert (out.box[:, :2] > -0.5).all() and (out.box[:, :2] < 1.5).all()
    # GT 1 sits in the corner cell: no neighbour exists on the near side
    second = out.gt_index == 1
    assert out.grid_x[second].tolist() == [0] and out.grid_y[second].tolist() == [0]
    assert out.batch_idx[second].tolist() == [1]
    torch.testing.assert_close(out.anchor_wh, torch.ones(4, 2))


def test_v5_multiple_anchors_and_levels():
    gt = torch.tensor([[32.0, 32.0, 40.0, 40.0]])
    out = yolo_v5_build_targets(gt, torch.tensor([0]), COCO_ANCHORS, STRIDES, SIZES, batch_size=1)
    for level, targets in enumerate(out):
        ratio = gt[0, 2:] / COCO_ANCHORS[level]
        matched = torch.maximum(ratio, 1 / ratio).max(dim=1).values < 4.0
        assert sorted(targets.anchor_idx.unique().tolist()) == torch.where(matched)[0].tolist()


def test_bad_inputs():
    with pytest.raises(ShapeError, match="gt_batch"):
        yolo_v3_assign(torch.zeros(2, 4), torch.zeros(3, dtype=torch.long), COCO_ANCHORS, STRIDES, SIZES, 1)
    with pytest.raises(ValueError, match=r"gt_batch values must lie in \[0, 1\)"):
        yolo_v5_build_targets(torch.ones(1, 4), torch.tensor([1]), COCO_ANCHORS, STRIDES, SIZES, 1)
    with pytest.raises(ShapeError, match="3 levels"):
        yolo_v3_assign(torch.ones(1, 4), torch.tensor([0]), COCO_ANCHORS, STRIDES[:2], SIZES, 1)
    empty = yolo_v3_assign(
        torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), COCO_ANCHORS, STRIDES, SIZES, 2
    )
    assert all(not t.positive.any() and not t.ignore.any() for t in empty)
    empty5 = yolo_v5_build_targets(
        torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), COCO_ANCHORS, STRIDES, SIZES, 2
    )
    assert all(t.gt_index.numel() == 0 for t in empty5)
