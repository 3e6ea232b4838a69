"""The optimizer's kernel choice (optim.implementation) and the batched EMA update."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from cvzoo.config import OptimConfig
from cvzoo.engine.ema import ModelEMA
from cvzoo.engine.optim import build_optimizer, implementation_flags


def small_net() -> nn.Module:
    # No bias before the BatchNorm: its gradient is float noise around zero, which Adam's normalisation
    # amplifies to full-size steps of any sign, so no two evaluation orders would agree on it.
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, bias=False), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 4))


def train_steps(model: nn.Module, cfg: OptimConfig, steps: int = 5) -> nn.Module:
    groups = [{"params": [p for n, p in model.named_parameters() if n.endswith("weight")]},
              {"params": [p for n, p in model.named_parameters() if n.endswith("bias")], "weight_decay": 0.0}]
    optimizer = build_optimizer(groups, cfg)
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.randn(4, 3, 8, 8, generator=generator)
        loss = model(x).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_auto_fuses_on_the_cpu(name):
    optimizer = build_optimizer([{"params": list(small_net().parameters())}], OptimConfig(name=name))
    assert optimizer.defaults["fused"] is True


def test_explicit_choices_reach_pytorch():
    params = list(small_net().parameters())
    assert implementation_flags("loop", params) == {"foreach": False}
    assert implementation_flags("foreach", params) == {"foreach": True}
    assert implementation_flags("fused", params) == {"fused": True}
    loop = build_optimizer([{"params": params}], OptimConfig(name="adamw", implementation="loop"))
    assert loop.defaults["foreach"] is False and not loop.defaults["fused"]


def test_auto_keeps_pytorchs_default_off_the_cpu():
    meta = [torch.empty(3, device="meta", requires_grad=True)]
    assert implementation_flags("auto", meta) == {}


@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_every_implementation_gives_the_same_training(name):
    cfg = dict(name=name, lr=0.05 if name == "sgd" else 1e-2, weight_decay=1e-3)
    models = {impl: train_steps(small_net(), OptimConfig(**cfg, implementation=impl))
              for impl in ("loop", "foreach", "fused")}
    reference = models["loop"].state_dict()
    for impl in ("foreach", "fused"):
        for key, value in models[impl].state_dict().items():
            torch.testing.assert_close(value, reference[key], rtol=1e-5, atol=1e-6, msg=f"{impl}: {key}")
    assert not torch.equal(reference["0.weight"], small_net().state_dict()["0.weight"])  # it trained


def test_ema_update_equals_the_per_tensor_formula():
    model = small_net()
    ema = ModelEMA(model, decay=0.9, tau=3.0)
    expected = copy.deepcopy(ema.module.state_dict())
    for step in range(3):
        with torch.no_grad():
            for param in model.parameters():
                param.add_(torch.randn_like(param))
        model.train()(torch.randn(2, 3, 8, 8))  # moves the BN statistics and its integer counter
        ema.update(model)
        d = 0.9 * (1 - torch.exp(torch.tensor(-(step + 1) / 3.0, dtype=torch.float64)).item())
        for name, value in model.state_dict().items():
            if value.dtype.is_floating_point:
                expected[name].mul_(d).add_(value, alpha=1 - d)
            else:
                expected[name].copy_(value)
    for name, value in ema.module.state_dict().items():
        assert torch.equal(value, expected[name]), name
    assert int(ema.module.state_dict()["1.num_batches_tracked"]) == 3
