"""The GAN models of every registered variant: shapes, ranges, gradients of each step, conditioning."""

import pytest
import torch
from torch import nn

from cvzoo.models import create_model, list_models

GANS = list_models(task="gan")


def test_the_variants_are_registered_under_their_own_task():
    assert {"dcgan_28", "dcgan_32", "dcgan_64", "cdcgan_28", "wgan_gp_28", "wgan_gp_64"} <= set(GANS)
    assert not set(GANS) & set(list_models(task="classify"))


@pytest.mark.parametrize("name", GANS)
def test_shapes_and_gradients_of_both_steps(name):
    torch.manual_seed(0)
    model = create_model(name, width=8, latent_dim=16, num_classes=3)  # narrow: the layout is what is tested
    size, channels = model.img_size, model.in_channels
    real = torch.rand(4, channels, size, size) * 2 - 1
    labels = torch.tensor([0, 1, 2, 1])
    images = model.generate(torch.randn(4, 16), labels)
    assert images.shape == (4, channels, size, size) and images.abs().max() <= 1
    assert model.discriminator(real, labels if model.conditional else None).shape == (4,)
    for part, trained, untouched in (("discriminator", model.discriminator, model.generator),
                                     ("generator", model.generator, None)):
        model.zero_grad(set_to_none=True)
        out = model(real, labels, part)
        assert all(torch.isfinite(v).all() for v in out.values())
        out["loss"].backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in trained.parameters()), part
        if untouched is not None:  # the discriminator's step samples without the generator's graph
            assert all(p.grad is None for p in untouched.parameters())
    if model.gp_weight:
        assert "gp" in model(real, labels, "discriminator")
        # Gulrajani et al. 2017: no batch norm in the critic (the penalty is per sample).
        assert not any(isinstance(m, nn.BatchNorm2d) for m in model.discriminator.modules())


def test_the_conditional_generator_follows_the_label():
    torch.manual_seed(0)
    model = create_model("cdcgan_28", width=8, latent_dim=16).eval()
    z = torch.randn(1, 16).repeat(2, 1)
    a, b = model.generate(z, torch.tensor([3, 7]))
    assert (a - b).abs().max() > 1e-3
    with pytest.raises(ValueError, match="conditional generator needs the class labels"):
        model.generator(z)


def test_bad_sizes_and_settings_are_named():
    with pytest.raises(ValueError, match="img_size=30"):
        create_model("dcgan_28", img_size=30)
    with pytest.raises(ValueError, match="loss='l2'"):
        create_model("dcgan_28", loss="l2")
    with pytest.raises(ValueError, match="part='both'"):
        create_model("dcgan_28", img_size=8, width=4)(torch.zeros(2, 1, 8, 8), None, "both")
