import math

import pytest
import torch
import torch.nn.functional as F
import torchvision.ops as tvops

from cvzoo.losses import (
    distribution_focal_loss,
    quality_focal_loss,
    sigmoid_focal_loss,
    softmax_focal_loss,
    varifocal_loss,
)
from cvzoo.ops import ShapeError

LOG2 = math.log(2.0)


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize(("alpha", "gamma"), [(0.25, 2.0), (-1.0, 1.5), (0.5, 0.0)])
def test_focal_matches_torchvision(reduction, alpha, gamma):
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 5, generator=generator) * 3
    targets = (torch.rand(6, 5, generator=generator) > 0.7).float()
    ours = sigmoid_focal_loss(logits, targets, alpha, gamma, reduction)
    torch.testing.assert_close(ours, tvops.sigmoid_focal_loss(logits, targets, alpha, gamma, reduction))


def test_focal_is_stable_for_huge_logits():
    logits = torch.tensor([100.0, 100.0, -100.0, -100.0], requires_grad=True)
    targets = torch.tensor([1.0, 0.0, 1.0, 0.0])
    loss = sigmoid_focal_loss(logits, targets)
    # confident and right: ~0; confident and wrong: alpha_t * |x| (p_t ~ 0, so (1 - p_t)^gamma = 1)
    torch.testing.assert_close(loss.detach(), torch.tensor([0.0, 0.75 * 100, 0.25 * 100, 0.0]))
    loss.sum().backward()
    assert torch.isfinite(logits.grad).all()
    # d/dx of alpha_t * softplus(+-x) -> alpha_t * sign; the easy examples get ~0 gradient
    torch.testing.assert_close(logits.grad, torch.tensor([0.0, 0.75, -0.25, 0.0]))


def test_focal_family_gradcheck():
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 4, dtype=torch.float64, generator=generator, requires_grad=True)
    soft = torch.rand(3, 4, dtype=torch.float64, generator=generator)
    soft[0] = 0.0
    assert torch.autograd.gradcheck(
        lambda x: sigmoid_focal_loss(x, (soft > 0.5).double(), reduction="sum"), logits
    )
    assert torch.autograd.gradcheck(lambda x: varifocal_loss(x, soft, reduction="sum"), logits)
    assert torch.autograd.gradcheck(lambda x: quality_focal_loss(x, soft, reduction="sum"), logits)
    dist = torch.randn(4, 6, dtype=torch.float64, generator=generator, requires_grad=True)
    target = torch.tensor([0.0, 1.3, 4.99, 5.0], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda d: distribution_focal_loss(d, target, reduction="mean"), dist)


def test_varifocal_hand_made():
    logits = torch.zeros(2)
    targets = torch.tensor([0.8, 0.0])
    loss = varifocal_loss(logits, targets, alpha=0.75, gamma=2.0)
    # positive: q * BCE(0.5, q) = 0.8 * log 2; negative: alpha * p^gamma * -log(1 - p)
    torch.testing.assert_close(loss, torch.tensor([0.8 * LOG2, 0.75 * 0.25 * LOG2]))
    assert varifocal_loss(logits, targets, reduction="sum").item() == pytest.approx(loss.sum().item())


def test_varifocal_with_explicit_positives_weighs_a_missed_match_zero():
    """RT-DETR's form: a matched pair whose boxes do not overlap (q = 0) is a positive of weight q = 0, not a
    negative; the other entries are unchanged."""
    logits = torch.zeros(3)
    targets = torch.tensor([0.8, 0.0, 0.0])
    positive = torch.tensor([True, True, False])
    loss = varifocal_loss(logits, targets, alpha=0.75, gamma=2.0, positive=positive)
    torch.testing.assert_close(loss, torch.tensor([0.8 * LOG2, 0.0, 0.75 * 0.25 * LOG2]))
    with pytest.raises(ShapeError):
        varifocal_loss(logits, targets, positive=positive[:2])


def test_quality_focal_hand_made():
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])  # sigmoid = 0.5 / 0.75
    targets = torch.tensor([[0.6, 0.0], [0.75, 0.0]])
    loss = quality_focal_loss(logits, targets, beta=2.0)
    expected_00 = (0.1**2) * LOG2
    expected_01 = (0.5**2) * LOG2
    assert loss[0].tolist() == pytest.approx([expected_00, expected_01])
    assert loss[1, 0].item() == pytest.approx(0.0, abs=1e-7)  # predicted exactly the target quality
    with pytest.raises(ShapeError, match="same shape"):
        quality_focal_loss(logits, targets[:1])


def test_distribution_focal_hand_made():
    logits = torch.tensor([[0.0, 1.0, 2.0, 0.0, 0.0], [0.0, 1.0, 2.0, 0.0, 0.0]])
    log_softmax = logits[0] - torch.logsumexp(logits[0], 0)
    loss = distribution_focal_loss(logits, torch.tensor([1.25, 4.0]))
    expected = [-(0.75 * log_softmax[1] + 0.25 * log_softmax[2]).item(), -log_softmax[4].item()]
    assert loss.tolist() == pytest.approx(expected)
    assert distribution_focal_loss(
        logits, torch.tensor([1.25, 4.0]), reduction="mean"
    ).item() == pytest.approx(sum(expected) / 2)
    with pytest.raises(ValueError, match=r"\[0, 4\]"):
        distribution_focal_loss(logits, torch.tensor([1.0, 4.5]))
    with pytest.raises(ShapeError, match="reg_max"):
        distribution_focal_loss(logits, torch.tensor([1.0]))


def test_reduction_checks():
    with pytest.raises(ValueError, match="reduction"):
        sigmoid_focal_loss(torch.zeros(2), torch.zeros(2), reduction="avg")
    empty = sigmoid_focal_loss(torch.zeros(0, requires_grad=True), torch.zeros(0), reduction="mean")
    assert empty.item() == 0.0 and empty.requires_grad


def test_softmax_focal_loss_reduces_to_cross_entropy_at_gamma_zero():
    torch.manual_seed(0)
    logits, targets = torch.randn(2, 4, 5, 6), torch.randint(0, 4, (2, 5, 6))
    targets[0, 0] = 255
    ce = F.cross_entropy(logits, targets, ignore_index=255)
    torch.testing.assert_close(softmax_focal_loss(logits, targets, gamma=0.0), ce)
    assert softmax_focal_loss(logits, targets, gamma=2.0) < ce  # easy pixels are down-weighted
    weight = torch.tensor([1.0, 2.0, 0.5, 1.0])
    weighted = F.cross_entropy(logits, targets, weight=weight, ignore_index=255, reduction="none").sum()
    torch.testing.assert_close(softmax_focal_loss(logits, targets, 0.0, weight) * (targets != 255).sum(), weighted)
