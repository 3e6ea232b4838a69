import pytest
import torch

from cvzoo.losses import dice_loss
from cvzoo.ops import ShapeError


def test_binary_hand_made():
    probs = torch.tensor([[[0.9, 0.1], [0.8, 0.4]]])  # [B=1, 2, 2]
    target = torch.tensor([[[1.0, 0.0], [1.0, 1.0]]])
    loss = dice_loss(probs, target, mode="binary", from_logits=False, smooth=0.0)
    # 2 * (0.9 + 0.8 + 0.4) / (2.2 + 3)
    assert loss.item() == pytest.approx(1 - 4.2 / 5.2)
    # ignore the last pixel: 2 * 1.7 / (1.8 + 2)
    target_ign = target.clone()
    target_ign[0, 1, 1] = 255
    loss = dice_loss(probs, target_ign, mode="binary", ignore_index=255, from_logits=False, smooth=0.0)
    assert loss.item() == pytest.approx(1 - 3.4 / 3.8)


def test_multiclass_hand_made_and_ignore():
    # 1 image, 3 classes, 4 pixels, probabilities given directly
    probs = torch.tensor([[[0.7, 0.1, 0.2, 0.0], [0.2, 0.8, 0.1, 0.5], [0.1, 0.1, 0.7, 0.5]]])
    target = torch.tensor([[0, 1, 2, 255]])
    per_class = dice_loss(probs, target, ignore_index=255, from_logits=False, smooth=0.0, reduction="none")
    # pixel 3 is ignored: class c dice = 2 p_c(own pixel) / (sum_c p over 3 pixels + 1)
    expected = torch.tensor([[1 - 1.4 / 2.0, 1 - 1.6 / 2.1, 1 - 1.4 / 1.9]])
    torch.testing.assert_close(per_class, expected)
    no_bg = dice_loss(
        probs, target, ignore_index=255, from_logits=False, smooth=0.0, include_background=False
    )
    assert no_bg.item() == pytest.approx(expected[0, 1:].mean().item())


def test_perfect_and_absent_classes():
    target = torch.tensor([[[0, 1], [1, 0]]])
    logits = torch.nn.functional.one_hot(target, 3).permute(0, 3, 1, 2).float() * 50  # class 2 absent
    loss = dice_loss(logits, target, reduction="none")
    assert loss.shape == (1, 3)
    assert loss.max().item() < 1e-6  # absent from prediction and target -> dice 1 thanks to smooth


def test_gradients_and_errors():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 4, 4, dtype=torch.float64, generator=generator, requires_grad=True)
    target = torch.randint(0, 3, (2, 4, 4), generator=generator)
    assert torch.autograd.gradcheck(lambda x: dice_loss(x, target), logits)
    binary_logits = torch.randn(2, 1, 4, 4, dtype=torch.float64, generator=generator, requires_grad=True)
    binary_target = (torch.rand(2, 1, 4, 4, generator=generator) > 0.5).double()
    assert torch.autograd.gradcheck(lambda x: dice_loss(x, binary_target, mode="binary"), binary_logits)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        dice_loss(logits, torch.full((2, 4, 4), 255))
    with pytest.raises(ShapeError, match=r"\[B, C, \.\.\.\]"):
        dice_loss(logits, target[:, :2])
    with pytest.raises(ShapeError, match="binary"):
        dice_loss(binary_logits, target, mode="binary")
    with pytest.raises(ValueError, match="mode"):
        dice_loss(logits, target, mode="tversky")
