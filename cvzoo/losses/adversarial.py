"""GAN losses: the discriminator's and the generator's side of each, and the WGAN-GP gradient penalty.

Every function takes the discriminator's raw scores (logits / critic values, any shape, averaged over
all elements) and returns a scalar.

- ``nonsaturating``: Goodfellow et al. 2014, sec. 3: the discriminator minimises the binary cross-entropy
  of real = 1 / fake = 0; the generator maximises log D(G(z)) rather than minimising log(1 - D(G(z))),
  which saturates early in training when D rejects every sample. DCGAN (Radford et al. 2016) trains with it.
- ``hinge``: Lim & Ye 2017 / Miyato et al. 2018: D minimises relu(1 - D(x)) + relu(1 + D(G(z))), G
  minimises -D(G(z)).
- ``wasserstein``: Arjovsky et al. 2017: the critic maximises D(x) - D(G(z)) (an estimate of the
  Wasserstein-1 distance when D is 1-Lipschitz), G minimises -D(G(z)). WGAN-GP (Gulrajani et al. 2017)
  keeps D near 1-Lipschitz with ``gradient_penalty`` instead of weight clipping.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

GAN_LOSSES = ("nonsaturating", "hinge", "wasserstein")


def discriminator_loss(kind: str, real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """The discriminator's (critic's) loss of ``kind`` (one of ``GAN_LOSSES``), to be minimised."""
    if kind == "nonsaturating":
        # -log sigmoid(s) = softplus(-s) and -log(1 - sigmoid(s)) = softplus(s): BCE on logits, stable.
        return F.softplus(-real_scores).mean() + F.softplus(fake_scores).mean()
    if kind == "hinge":
        return F.relu(1 - real_scores).mean() + F.relu(1 + fake_scores).mean()
    if kind == "wasserstein":
        return fake_scores.mean() - real_scores.mean()
    raise ValueError(f"unknown GAN loss {kind!r}; choose one of {', '.join(GAN_LOSSES)}")


def generator_loss(kind: str, fake_scores: torch.Tensor) -> torch.Tensor:
    """The generator's loss of ``kind`` (one of ``GAN_LOSSES``), to be minimised."""
    if kind == "nonsaturating":
        return F.softplus(-fake_scores).mean()  # -log D(G(z))
    if kind in ("hinge", "wasserstein"):
        return -fake_scores.mean()
    raise ValueError(f"unknown GAN loss {kind!r}; choose one of {', '.join(GAN_LOSSES)}")


def gradient_penalty(critic: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor,
                     fake: torch.Tensor) -> torch.Tensor:
    """WGAN-GP's penalty (Gulrajani et al. 2017, eq. 3): E[(||grad_x D(x_hat)||_2 - 1)^2] at points
    ``x_hat = e * real + (1 - e) * fake`` on random lines between pairs (e ~ U[0, 1] per sample).

    The graph is kept (``create_graph``) so that the penalty trains the critic's weights.

    Args:
        critic: ``x [B, ...] -> scores [B]`` (the class labels of a conditional critic bound in).
        real: real samples ``[B, C, H, W]``.
        fake: generated samples of the same shape (detached from the generator).
    """
    if real.shape != fake.shape:
        raise ValueError(f"gradient_penalty: real {tuple(real.shape)} and fake {tuple(fake.shape)} differ in shape")
    eps = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), device=real.device, dtype=real.dtype)
    mixed = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    scores = critic(mixed)
    (grads,) = torch.autograd.grad(scores.sum(), mixed, create_graph=True)
    return ((grads.flatten(1).norm(2, dim=1) - 1) ** 2).mean()
