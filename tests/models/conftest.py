"""Shared helpers for the model tests."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
import torch
from torch import nn

# Initialisers a model constructor may call; replaced by no-ops while building a model whose every
# tensor is about to be overwritten by a checkpoint (large fully connected layers make init the
# slowest part of building VGG/AlexNet on a small CPU).
_INIT_FUNCTIONS = (
    "uniform_", "normal_", "trunc_normal_", "kaiming_uniform_", "kaiming_normal_", "xavier_uniform_",
    "xavier_normal_", "orthogonal_", "constant_", "ones_", "zeros_",
)


def _keep(tensor: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    return tensor


@contextlib.contextmanager
def _skip_init() -> Iterator[None]:
    saved = {name: getattr(nn.init, name) for name in _INIT_FUNCTIONS}
    try:
        for name in saved:
            setattr(nn.init, name, _keep)
        yield
    finally:
        for name, fn in saved.items():
            setattr(nn.init, name, fn)


@pytest.fixture
def skip_init():
    """Context manager: build models with uninitialised (``torch.empty``) parameters."""
    return _skip_init


def randomize_norm_stats(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm random affine parameters and running statistics.

    Fresh BN layers are the identity in eval mode (mean 0, var 1, weight 1, bias 0), which would hide
    a checkpoint whose statistics failed to load.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                n = module.num_features
                module.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
                module.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(n, generator=generator) * 0.1)
    return model


@pytest.fixture
def random_norm_stats():
    return randomize_norm_stats


@pytest.fixture(autouse=True)
def _single_thread():
    """Run model tests on one intra-op thread.

    The tensors here are tiny (batch 2, <= 64 px), so thread start-up and barriers outweigh the work;
    on a busy 2-core machine two threads made a ResNet-110 forward/backward 10-50x slower.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
