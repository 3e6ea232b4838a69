"""GAN losses against their definitions, and the gradient penalty of a critic whose gradient is known."""

import pytest
import torch
import torch.nn.functional as F

from cvzoo.losses.adversarial import discriminator_loss, generator_loss, gradient_penalty

REAL = torch.tensor([2.0, -0.5, 0.3])
FAKE = torch.tensor([-1.0, 1.5, 0.0])


def test_nonsaturating_is_binary_cross_entropy_real_one_fake_zero():
    expected = (F.binary_cross_entropy_with_logits(REAL, torch.ones(3))
                + F.binary_cross_entropy_with_logits(FAKE, torch.zeros(3)))
    torch.testing.assert_close(discriminator_loss("nonsaturating", REAL, FAKE), expected)
    # The generator maximises log D(G(z)) (Goodfellow et al. 2014, sec. 3): -mean(log sigmoid(fake)).
    torch.testing.assert_close(generator_loss("nonsaturating", FAKE), -torch.sigmoid(FAKE).log().mean())


def test_hinge_and_wasserstein_by_hand():
    # relu(1 - [2, -0.5, 0.3]) = [0, 1.5, 0.7]; relu(1 + [-1, 1.5, 0]) = [0, 2.5, 1]
    assert discriminator_loss("hinge", REAL, FAKE).item() == pytest.approx(2.2 / 3 + 3.5 / 3)
    assert discriminator_loss("wasserstein", REAL, FAKE).item() == pytest.approx(0.5 / 3 - 1.8 / 3)
    assert generator_loss("hinge", FAKE).item() == generator_loss("wasserstein", FAKE).item() == pytest.approx(-0.5 / 3)
    with pytest.raises(ValueError, match="unknown GAN loss 'l1'"):
        generator_loss("l1", FAKE)


def test_gradient_penalty_of_a_linear_critic():
    # D(x) = <w, x> has gradient w everywhere: the penalty is (||w|| - 1)^2 at any interpolate.
    w = torch.tensor([3.0, 4.0, 0.0, 0.0]).view(1, 1, 2, 2).requires_grad_(True)
    real, fake = torch.randn(5, 1, 2, 2), torch.randn(5, 1, 2, 2)
    penalty = gradient_penalty(lambda x: (x * w).flatten(1).sum(1), real, fake)
    assert penalty.item() == pytest.approx(16.0)
    (grad,) = torch.autograd.grad(penalty, w)  # the graph reaches the critic's weights: 2 (||w|| - 1) w / ||w||
    torch.testing.assert_close(grad, 2 * 4 * w.detach() / 5)
    with pytest.raises(ValueError, match=r"real \(5, 1, 2, 2\) and fake \(4, 1, 2, 2\)"):
        gradient_penalty(lambda x: x.sum(), real, fake[:4])
