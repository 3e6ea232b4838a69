"""Exponential moving average of the weights (Polyak averaging), evaluated instead of the raw model."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


class ModelEMA:
    """Keeps ``ema = d * ema + (1 - d) * model`` after every optimizer step.

    The decay ramps up as ``decay * (1 - exp(-updates / tau))`` so that the average is not dominated by
    the random initial weights in the first steps; buffers (BN statistics) are averaged the same way.
    """

    def __init__(self, model: nn.Module, decay: float = 0.9998, tau: float = 2000.0, updates: int = 0):
        self.module = copy.deepcopy(unwrap(model)).eval()
        for param in self.module.parameters():
            param.requires_grad_(False)
        self.decay = decay
        self.tau = tau
        self.updates = updates

    def current_decay(self) -> float:
        return self.decay * (1 - math.exp(-self.updates / self.tau))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = self.current_decay()
        source = unwrap(model).state_dict()
        averaged, latest = [], []
        for name, value in self.module.state_dict().items():
            if value.dtype.is_floating_point:
                averaged.append(value)
                latest.append(source[name].detach())
            else:
                value.copy_(source[name])
        # The same two operations per tensor as ``value.mul_(d).add_(new, alpha=1 - d)``, batched over all
        # tensors: hundreds of small kernel calls become two (the result is the same to the bit).
        if averaged:
            torch._foreach_mul_(averaged, d)
            torch._foreach_add_(averaged, latest, alpha=1 - d)

    def state_dict(self) -> dict:
        return {"module": self.module.state_dict(), "updates": self.updates, "decay": self.decay, "tau": self.tau}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = state["updates"]
        self.decay = state.get("decay", self.decay)
        self.tau = state.get("tau", self.tau)


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside DDP / torch.compile wrappers."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model
