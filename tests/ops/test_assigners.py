import pytest
import torch

from cvzoo.ops import ShapeError, TaskAlignedAssigner, box_iou, make_grid_points
from cvzoo.ops.boxes import complete_box_iou_elementwise


def test_one_gt_hand_made():
    gt = torch.tensor([[[0.0, 0.0, 20.0, 20.0]]])
    points = torch.tensor([[5.0, 5.0], [15.0, 5.0], [5.0, 15.0], [30.0, 30.0]])
    pred_boxes = torch.tensor([[[0.0, 0, 20, 20], [0, 0, 20, 10], [0, 0, 10, 10], [20, 20, 40, 40]]])
    scores = torch.zeros(1, 4, 2)
    scores[0, :, 1] = torch.tensor([0.5, 0.9, 0.9, 0.99])
    assigner = TaskAlignedAssigner(num_classes=2, topk=2, alpha=1.0, beta=6.0, iou_type="iou")
    out = assigner(scores, pred_boxes, points, torch.tensor([[[1]]]), gt, torch.ones(1, 1, 1))
    # metrics s * u^6: 0.5 * 1, 0.9 * 0.5^6, 0.9 * 0.25^6; the last point is outside the box
    assert out.fg_mask.tolist() == [[True, True, False, False]]
    assert out.labels.tolist() == [[1, 1, 2, 2]]
    assert out.gt_idx[0, :2].tolist() == [0, 0]
    torch.testing.assert_close(out.bboxes[0, :2], gt[0].expand(2, 4))
    assert out.bboxes[0, 2:].abs().sum() == 0
    # normalised: metric / max metric * max IoU of the GT's positives (1.0)
    expected = torch.tensor([1.0, 0.9 * 0.5**6 / 0.5, 0.0, 0.0])
    torch.testing.assert_close(out.scores[0, :, 1], expected)
    assert out.scores[0, :, 0].abs().sum() == 0


def test_anchor_claimed_twice_keeps_best_iou_and_padding_ignored():
    gt = torch.tensor([[[0.0, 0, 20, 20], [0, 0, 40, 40]], [[0.0, 0, 40, 40], [0, 0, 40, 40]]])
    points = torch.tensor([[5.0, 5.0], [30.0, 30.0]])
    pred = torch.tensor([[0.0, 0, 20, 20], [20, 20, 40, 40]]).expand(2, 2, 4)
    scores = torch.full((2, 2, 3), 0.5)
    labels = torch.tensor([[[0], [2]], [[1], [0]]])
    mask = torch.tensor([[[1], [1]], [[0], [0]]])  # image 1 holds only padding
    out = TaskAlignedAssigner(num_classes=3, topk=5)(scores, pred, points, labels, gt, mask)
    # Point 0 is inside both GTs of image 0; its prediction overlaps GT 0 exactly.
    assert out.gt_idx[0].tolist() == [0, 1] and out.labels[0].tolist() == [0, 2]
    assert not out.fg_mask[1].any() and out.labels[1].tolist() == [3, 3]
    assert out.scores[1].abs().sum() == 0


def reference_assign(scores, boxes, points, labels, gts, mask, topk, alpha, beta, eps=1e-9):
    """Per-image, per-GT loops over the TOOD rule, for comparison."""
    batch, num_anchors, num_classes = scores.shape
    out_idx = torch.full((batch, num_anchors), -1)
    out_scores = torch.zeros_like(scores)
    for b in range(batch):
        metric, iou = {}, {}
        claims = {}
        for m in range(gts.shape[1]):
            if not mask[b, m]:
                continue
            x1, y1, x2, y2 = gts[b, m].tolist()
            for a in range(num_anchors):
                x, y = points[a].tolist()
                if min(x - x1, y - y1, x2 - x, y2 - y) > eps:
                    u = max(0.0, complete_box_iou_elementwise(gts[b, m], boxes[b, a]).item())
                    iou[m, a] = u
                    metric[m, a] = scores[b, a, labels[b, m]].item() ** alpha * u**beta
            ranked = sorted((a for (mm, a) in metric if mm == m), key=lambda a: -metric[m, a])[:topk]
            for a in ranked:
                claims.setdefault(a, []).append(m)
        owner = {a: max(ms, key=lambda m: iou[m, a]) for a, ms in claims.items()}
        for m in {m for m in owner.values()}:
            mine = [a for a, mm in owner.items() if mm == m]
            best_metric = max(metric[m, a] for a in mine)
            best_iou = max(iou[m, a] for a in mine)
            for a in mine:
                out_idx[b, a] = m
                out_scores[b, a, labels[b, m]] = metric[m, a] / (best_metric + eps) * best_iou
    return out_idx, out_scores


def test_random_against_loop_reference_and_invariants():
    generator = torch.Generator().manual_seed(0)
    points, _ = make_grid_points([(8, 8), (4, 4)], [8, 16])
    batch, num_gt, num_classes, topk = 3, 6, 4, 5
    top_left = torch.rand(batch, num_gt, 2, generator=generator) * 40
    gts = torch.cat((top_left, top_left + 8 + torch.rand(batch, num_gt, 2, generator=generator) * 30), -1)
    labels = torch.randint(0, num_classes, (batch, num_gt, 1), generator=generator)
    mask = torch.ones(batch, num_gt, 1)
    mask[1, 4:] = 0
    mask[2] = 0
    mask[2, 0] = 1
    centres = points[None].expand(batch, -1, -1)
    half = torch.rand(batch, points.shape[0], 2, generator=generator) * 15 + 2
    pred = torch.cat((centres - half, centres + half), -1)
    scores = torch.rand(batch, points.shape[0], num_classes, generator=generator)
    assigner = TaskAlignedAssigner(num_classes, topk=topk, alpha=0.5, beta=6.0)
    out = assigner(scores, pred, points, labels, gts, mask)

    ref_idx, ref_scores = reference_assign(
        scores, pred, points, labels[..., 0], gts, mask[..., 0].bool(), topk, 0.5, 6.0
    )
    assert torch.equal(out.fg_mask, ref_idx >= 0)
    assert torch.equal(out.gt_idx[out.fg_mask], ref_idx[ref_idx >= 0])
    torch.testing.assert_close(out.scores, ref_scores, rtol=1e-4, atol=1e-6)

    assert out.fg_mask.any()
    b, a = torch.where(out.fg_mask)
    m = out.gt_idx[b, a]
    assert mask[b, m, 0].all()  # never a padding GT
    box = gts[b, m]
    assert ((points[a] > box[:, :2]) & (points[a] < box[:, 2:])).all()  # inside the assigned GT
    counts = torch.zeros(batch, num_gt, dtype=torch.long).index_put_(
        (b, m), torch.ones_like(m), accumulate=True
    )
    assert counts.max() <= topk
    assert torch.equal(out.labels[out.fg_mask], labels[b, m, 0])
    assert (out.labels[~out.fg_mask] == num_classes).all()
    assert (out.scores.count_nonzero(-1) <= 1).all() and out.scores.max() <= 1.0


def test_no_gt_and_bad_inputs():
    assigner = TaskAlignedAssigner(num_classes=2)
    out = assigner(
        torch.rand(2, 5, 2),
        torch.rand(2, 5, 4),
        torch.rand(5, 2),
        torch.zeros(2, 0, 1),
        torch.zeros(2, 0, 4),
        torch.zeros(2, 0, 1),
    )
    assert not out.fg_mask.any() and (out.labels == 2).all() and out.scores.sum() == 0
    with pytest.raises(ShapeError, match="anchor_points"):
        assigner(
            torch.rand(1, 5, 2),
            torch.rand(1, 5, 4),
            torch.rand(4, 2),
            torch.zeros(1, 1, 1),
            torch.zeros(1, 1, 4),
            torch.ones(1, 1, 1),
        )
    with pytest.raises(ShapeError, match="3 classes, expected 2"):
        assigner(
            torch.rand(1, 5, 3),
            torch.rand(1, 5, 4),
            torch.rand(5, 2),
            torch.zeros(1, 1, 1),
            torch.zeros(1, 1, 4),
            torch.ones(1, 1, 1),
        )
    with pytest.raises(ValueError, match=r"gt_labels must lie in \[0, 2\)"):
        assigner(
            torch.rand(1, 5, 2),
            torch.rand(1, 5, 4),
            torch.rand(5, 2),
            torch.full((1, 1, 1), 5),
            torch.zeros(1, 1, 4),
            torch.ones(1, 1, 1),
        )
    with pytest.raises(ShapeError, match="mask_gt"):
        assigner(
            torch.rand(1, 5, 2),
            torch.rand(1, 5, 4),
            torch.rand(5, 2),
            torch.zeros(1, 1, 1),
            torch.zeros(1, 1, 4),
            torch.ones(1, 2),
        )
    assert box_iou(torch.zeros(0, 4), torch.zeros(0, 4)).shape == (0, 0)
