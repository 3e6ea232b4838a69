import math

import pytest
import torch
import torch.nn.functional as F

from cvzoo.losses import SoftTargetCrossEntropy, label_smoothing_cross_entropy, soft_target_cross_entropy
from cvzoo.ops import ShapeError


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
def test_label_smoothing_matches_torch(smoothing, reduction):
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(7, 5, generator=generator)
    target = torch.randint(0, 5, (7,), generator=generator)
    target[2] = -100
    ours = label_smoothing_cross_entropy(logits, target, smoothing, reduction=reduction)
    ref = F.cross_entropy(logits, target, reduction=reduction, label_smoothing=smoothing)
    torch.testing.assert_close(ours, ref)
    # per-pixel layout [N, C, H, W] with ignore 255
    logits4 = torch.randn(2, 3, 4, 4, generator=generator)
    target4 = torch.randint(0, 3, (2, 4, 4), generator=generator)
    target4[0, 0] = 255
    torch.testing.assert_close(
        label_smoothing_cross_entropy(logits4, target4, smoothing, 255, reduction),
        F.cross_entropy(logits4, target4, ignore_index=255, reduction=reduction, label_smoothing=smoothing),
    )


def test_label_smoothing_hand_made():
    logits = torch.zeros(1, 4)
    logits[0, 2] = math.log(3.0)  # softmax = (1, 1, 3, 1) / 6
    loss = label_smoothing_cross_entropy(logits, torch.tensor([2]), smoothing=0.2)
    log_p = [math.log(1 / 6), math.log(1 / 6), math.log(3 / 6), math.log(1 / 6)]
    expected = -(0.8 * log_p[2] + 0.2 * sum(log_p) / 4)
    assert loss.item() == pytest.approx(expected)
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        label_smoothing_cross_entropy(logits, torch.tensor([7]))
    with pytest.raises(ShapeError, match=r"\[N, C, \.\.\.\]"):
        label_smoothing_cross_entropy(logits, torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="smoothing"):
        label_smoothing_cross_entropy(logits, torch.tensor([1]), smoothing=1.0)


def test_soft_target_cross_entropy():
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 3, generator=generator, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 2, 1, 1])
    one_hot = F.one_hot(labels, 3).double()
    # one-hot targets give ordinary cross entropy
    torch.testing.assert_close(soft_target_cross_entropy(logits, one_hot), F.cross_entropy(logits, labels))
    # mixup: lam * CE(y_a) + (1 - lam) * CE(y_b)
    other = torch.tensor([1, 1, 0, 2])
    lam = 0.7
    mixed = lam * one_hot + (1 - lam) * F.one_hot(other, 3).double()
    expected = lam * F.cross_entropy(logits, labels) + (1 - lam) * F.cross_entropy(logits, other)
    torch.testing.assert_close(SoftTargetCrossEntropy()(logits, mixed), expected)
    assert torch.autograd.gradcheck(lambda x: soft_target_cross_entropy(x, mixed), logits)
    assert SoftTargetCrossEntropy(reduction="none")(logits, mixed).shape == (4,)
    with pytest.raises(ShapeError, match="same shape"):
        soft_target_cross_entropy(logits, mixed[:2])
