import math

import pytest
import torch
import torch.nn.functional as F
import torchvision.ops as tvops

from cvzoo.losses import iou_loss, smooth_l1_loss
from cvzoo.ops import ShapeError


def _boxes(n, seed, dtype=torch.float32):
    generator = torch.Generator().manual_seed(seed)
    top_left = torch.rand(n, 2, generator=generator, dtype=torch.float64) * 50
    return torch.cat(
        (top_left, top_left + 1 + torch.rand(n, 2, generator=generator, dtype=torch.float64) * 40), 1
    ).to(dtype)


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize(
    ("kind", "ref"),
    [
        ("giou", tvops.generalized_box_iou_loss),
        ("diou", tvops.distance_box_iou_loss),
        ("ciou", tvops.complete_box_iou_loss),
    ],
)
def test_iou_losses_match_torchvision(kind, ref, reduction):
    pred, target = _boxes(16, 0), _boxes(16, 1)  # includes disjoint pairs
    torch.testing.assert_close(iou_loss(pred, target, kind, reduction), ref(pred, target, reduction))


@pytest.mark.parametrize(
    ("kind", "ref"),
    [
        ("giou", tvops.generalized_box_iou_loss),
        ("diou", tvops.distance_box_iou_loss),
        ("ciou", tvops.complete_box_iou_loss),
    ],
)
def test_iou_loss_gradients_match_torchvision(kind, ref):
    pred = _boxes(5, 2, torch.float64).requires_grad_()
    target = _boxes(5, 3, torch.float64)
    iou_loss(pred, target, kind, "sum").backward()
    ours = pred.grad.clone()
    pred.grad = None
    ref(pred, target, "sum").backward()
    torch.testing.assert_close(ours, pred.grad)


def test_iou_loss_hand_made_and_gradcheck():
    pred = torch.tensor([[0.0, 0, 2, 2], [0, 0, 2, 2]], dtype=torch.float64)
    target = torch.tensor([[1.0, 1, 3, 3], [4, 0, 6, 2]], dtype=torch.float64)
    loss = iou_loss(pred, target, "iou", eps=0.0)
    assert loss.tolist() == pytest.approx([1 - 1 / 7, 1.0])
    # GIoU still separates the disjoint pair: 1 - (0 - (12 - 8) / 12)
    assert iou_loss(pred, target, "giou", eps=0.0)[1].item() == pytest.approx(1 + 1 / 3)
    pred = pred.clone().requires_grad_()
    for kind in ("iou", "giou", "diou"):
        assert torch.autograd.gradcheck(lambda p, kind=kind: iou_loss(p, target, kind, "sum"), pred)
    with pytest.raises(ValueError, match="kind"):
        iou_loss(pred, target, "eiou")
    with pytest.raises(ShapeError, match="same shape"):
        iou_loss(pred, target[:1])


@pytest.mark.parametrize("beta", [0.0, 1.0 / 9, 1.0])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_smooth_l1_matches_torch(beta, reduction):
    generator = torch.Generator().manual_seed(4)
    x, y = torch.randn(8, 4, generator=generator), torch.randn(8, 4, generator=generator)
    torch.testing.assert_close(
        smooth_l1_loss(x, y, beta, reduction), F.smooth_l1_loss(x, y, reduction=reduction, beta=beta)
    )


def test_smooth_l1_hand_made():
    x = torch.tensor([0.5, 2.0, -3.0])
    loss = smooth_l1_loss(x, torch.zeros(3), beta=1.0, reduction="none")
    assert loss.tolist() == pytest.approx([0.5 * 0.25, 2 - 0.5, 3 - 0.5])
    with pytest.raises(ValueError, match="beta"):
        smooth_l1_loss(x, x, beta=-1.0)
    assert not math.isnan(smooth_l1_loss(torch.zeros(0), torch.zeros(0)).item())
