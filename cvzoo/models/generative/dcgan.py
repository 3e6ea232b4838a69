"""DCGAN (Radford et al. 2016), the WGAN-GP critic (Gulrajani et al. 2017) and their class-conditional form.

Generator: the latent vector is a 1x1 map that a transposed convolution grows to a ``base`` x ``base``
map (4, or 7 for 28 px images), then stride-2 transposed convolutions double it up to the image size,
halving the channels; batch norm and ReLU everywhere but the output, which is tanh (images in [-1, 1]).
Discriminator: the mirror image, stride-2 convolutions with LeakyReLU(0.2), no normalisation on the
first layer (the paper's guideline, sec. 3), and a final ``base`` x ``base`` convolution to one score.
The WGAN-GP critic has no batch norm: the gradient penalty is taken per sample, which batch norm would
couple across the batch (Gulrajani et al. 2017, sec. 4: "no critic batch normalization"); it uses layer
normalisation, as the paper recommends in its place.

Conditional variant (Mirza & Osindero 2014): the generator reads ``[z, one_hot(label)]``; the
discriminator reads the image with ``num_classes`` constant one-hot planes appended as channels.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from cvzoo.losses.adversarial import GAN_LOSSES, discriminator_loss, generator_loss, gradient_penalty
from cvzoo.models.registry import register_model


def _base_and_ups(img_size: int) -> tuple[int, int]:
    """``img_size = base * 2**ups`` with base 4 (32, 64 px, ...) or 7 (28 px), ``ups >= 1``."""
    for base in (4, 7):
        ups = math.log2(img_size / base) if img_size >= 2 * base else -1
        if ups >= 1 and ups == int(ups):
            return base, int(ups)
    raise ValueError(f"img_size={img_size}: DCGAN needs 4 * 2**k or 7 * 2**k px (8, 14, 16, 28, 32, 64, ...)")


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "layer":  # over (C, H, W) of each sample, with per-channel affine: GroupNorm with one group
        return nn.GroupNorm(1, channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm={kind!r}: choose batch, layer or none")


class Generator(nn.Module):
    """``z [B, latent_dim]`` (+ labels ``[B]``) -> images ``[B, out_channels, img_size, img_size]`` in [-1, 1]."""

    def __init__(self, img_size: int = 64, out_channels: int = 3, latent_dim: int = 100, width: int = 64,
                 num_classes: int = 0) -> None:
        super().__init__()
        base, ups = _base_and_ups(img_size)
        self.latent_dim, self.num_classes = latent_dim, num_classes
        channels = width * 2 ** (ups - 1)
        layers: list[nn.Module] = [nn.ConvTranspose2d(latent_dim + num_classes, channels, base, 1, 0, bias=False),
                                   nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]
        for _ in range(ups - 1):
            layers += [nn.ConvTranspose2d(channels, channels // 2, 4, 2, 1, bias=False),
                       nn.BatchNorm2d(channels // 2), nn.ReLU(inplace=True)]
            channels //= 2
        layers += [nn.ConvTranspose2d(channels, out_channels, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.num_classes:
            if labels is None:
                raise ValueError("a conditional generator needs the class labels [B]")
            z = torch.cat([z, F.one_hot(labels, self.num_classes).to(z.dtype)], 1)
        return self.net(z[:, :, None, None])


class Discriminator(nn.Module):
    """Images ``[B, in_channels, img_size, img_size]`` (+ labels ``[B]``) -> scores (logits) ``[B]``.

    ``score_bias=False`` drops the bias of the score: a Wasserstein critic's loss is a difference of mean
    scores, in which a constant cancels (its gradient is always zero).
    """

    def __init__(self, img_size: int = 64, in_channels: int = 3, width: int = 64, num_classes: int = 0,
                 norm: str = "batch", score_bias: bool = True) -> None:
        super().__init__()
        base, ups = _base_and_ups(img_size)
        self.num_classes = num_classes
        layers: list[nn.Module] = [nn.Conv2d(in_channels + num_classes, width, 4, 2, 1),
                                   nn.LeakyReLU(0.2, inplace=True)]
        channels = width
        for _ in range(ups - 1):
            layers += [nn.Conv2d(channels, channels * 2, 4, 2, 1, bias=norm == "none"), _norm(norm, channels * 2),
                       nn.LeakyReLU(0.2, inplace=True)]
            channels *= 2
        layers.append(nn.Conv2d(channels, 1, base, 1, 0, bias=score_bias))
        self.net = nn.Sequential(*layers)

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.num_classes:
            if labels is None:
                raise ValueError("a conditional discriminator needs the class labels [B]")
            planes = F.one_hot(labels, self.num_classes).to(images.dtype)[:, :, None, None]
            images = torch.cat([images, planes.expand(-1, -1, *images.shape[-2:])], 1)
        return self.net(images).flatten()


def dcgan_init(module: nn.Module) -> None:
    """DCGAN's initialisation (sec. 4): weights ~ N(0, 0.02); batch-norm scales ~ N(1, 0.02), shifts 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


# The optimizer settings of DCGAN (Radford et al. 2016, sec. 4: Adam, lr 2e-4, beta1 0.5) for both networks.
DCGAN_RECIPE = {f"gan.{part}.{key}": value for part in ("generator", "discriminator")
                for key, value in (("lr", 2e-4), ("betas", (0.5, 0.999)))} | {"gan.n_critic": 1}
# WGAN-GP (Gulrajani et al. 2017, Alg. 1: alpha 1e-4, beta1 0, beta2 0.9, n_critic 5; lambda 10 is the model's
# gp_weight).
WGAN_GP_RECIPE = {f"gan.{part}.{key}": value for part in ("generator", "discriminator")
                  for key, value in (("lr", 1e-4), ("betas", (0.0, 0.9)))} | {"gan.n_critic": 5}


class GAN(nn.Module):
    """A generator and a discriminator with their loss: ``forward(real, labels, part)`` returns the loss of
    the discriminator's or the generator's step, so one (DDP-wrapped) module serves both optimizers.

    Args:
        img_size: image side (4 * 2**k or 7 * 2**k: 28, 32, 64, ...).
        in_channels: image channels (1 for MNIST-style data, 3 for colour).
        latent_dim: length of the latent vector z ~ N(0, I).
        width: channels of the discriminator's first layer and the generator's last hidden layer.
        num_classes: the class count; used (one-hot conditioning of both networks) when ``conditional``.
        conditional: condition both networks on the class label.
        loss: one of ``GAN_LOSSES``.
        critic_norm: the discriminator's normalisation: ``batch`` (DCGAN), ``layer`` (WGAN-GP) or ``none``.
        gp_weight: weight of the gradient penalty in the discriminator's loss (WGAN-GP's lambda; 0 = off).
    """

    recipe_name = "DCGAN (Radford et al. 2016)"
    default_recipe = DCGAN_RECIPE

    def __init__(self, img_size: int = 64, in_channels: int = 3, latent_dim: int = 100, width: int = 64,
                 num_classes: int = 10, conditional: bool = False, loss: str = "nonsaturating",
                 critic_norm: str = "batch", gp_weight: float = 0.0) -> None:
        super().__init__()
        if loss not in GAN_LOSSES:
            raise ValueError(f"loss={loss!r}: choose one of {', '.join(GAN_LOSSES)}")
        if conditional and num_classes < 2:
            raise ValueError(f"a conditional GAN needs num_classes >= 2, got {num_classes}")
        classes = num_classes if conditional else 0
        self.img_size, self.in_channels, self.latent_dim = img_size, in_channels, latent_dim
        self.num_classes, self.conditional = num_classes, conditional
        self.loss, self.gp_weight = loss, gp_weight
        self.generator = Generator(img_size, in_channels, latent_dim, width, classes)
        self.discriminator = Discriminator(img_size, in_channels, width, classes, critic_norm,
                                           score_bias=loss != "wasserstein")
        dcgan_init(self)

    def sample_latent(self, n: int, device: torch.device | None = None, generator: torch.Generator | None = None):
        return torch.randn(n, self.latent_dim, device=device, generator=generator)

    def generate(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Images ``[B, C, H, W]`` in [-1, 1] for latents ``z [B, latent_dim]`` (and labels when conditional)."""
        return self.generator(z, labels if self.conditional else None)

    def forward(self, real: torch.Tensor, labels: torch.Tensor | None = None,
                part: str = "discriminator") -> dict[str, torch.Tensor]:
        """The loss of one training step, on real images ``[B, C, H, W]`` in [-1, 1] (and their labels).

        ``part="discriminator"``: D's loss on the real batch and as many fresh samples (the generator runs
        without gradients), plus the gradient penalty; ``part="generator"``: G's loss on fresh samples.
        Conditional samples take the real batch's labels, so both see the data's class frequencies.
        """
        labels = labels if self.conditional else None
        z = self.sample_latent(real.shape[0], real.device)
        if part == "discriminator":
            with torch.no_grad():
                fake = self.generator(z, labels)
            real_scores = self.discriminator(real, labels)
            fake_scores = self.discriminator(fake, labels)
            loss = discriminator_loss(self.loss, real_scores, fake_scores)
            out = {"real_score": real_scores.detach().mean(), "fake_score": fake_scores.detach().mean()}
            if self.gp_weight > 0:
                penalty = gradient_penalty(lambda x: self.discriminator(x, labels), real, fake)
                loss = loss + self.gp_weight * penalty
                out["gp"] = penalty.detach()
            return {"loss": loss, **out}
        if part == "generator":
            return {"loss": generator_loss(self.loss, self.discriminator(self.generator(z, labels), labels))}
        raise ValueError(f"part={part!r}: 'discriminator' or 'generator'")


class WGANGP(GAN):
    """WGAN-GP (Gulrajani et al. 2017): the DCGAN networks with a layer-normalised critic, the Wasserstein
    loss and a gradient penalty of weight 10, trained with its own recipe."""

    recipe_name = "WGAN-GP (Gulrajani et al. 2017)"
    default_recipe = WGAN_GP_RECIPE

    def __init__(self, img_size: int = 64, in_channels: int = 3, latent_dim: int = 100, width: int = 64,
                 num_classes: int = 10, conditional: bool = False, loss: str = "wasserstein",
                 critic_norm: str = "layer", gp_weight: float = 10.0) -> None:
        super().__init__(img_size, in_channels, latent_dim, width, num_classes, conditional, loss, critic_norm,
                         gp_weight)


def _register(size: int) -> None:
    shape = (1 if size == 28 else 3, size, size)  # 28 px: MNIST-style grey images
    register_model(f"dcgan_{size}", GAN, task="gan", input_size=shape, img_size=size)
    register_model(f"cdcgan_{size}", GAN, task="gan", input_size=shape, img_size=size, conditional=True)
    register_model(f"wgan_gp_{size}", WGANGP, task="gan", input_size=shape, img_size=size)


for _size in (28, 32, 64):
    _register(_size)
