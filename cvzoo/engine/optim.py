"""Optimizers and learning-rate schedules (stepped per optimizer step, with warm-up and a floor)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from cvzoo.config import OptimConfig, SchedulerConfig


def build_optimizer(param_groups: list[dict[str, Any]], cfg: OptimConfig) -> torch.optim.Optimizer:
    """SGD (momentum, Nesterov) / Adam / AdamW over ``param_groups``.

    Groups may carry their own ``lr`` or an ``lr_mult`` (e.g. 0.1 for a pretrained backbone, base lr
    ``cfg.lr * lr_mult``); otherwise they use ``cfg.lr``. Empty groups are dropped.
    """
    groups = []
    for group in param_groups:
        if not group["params"]:
            continue
        group = dict(group)
        lr_mult = group.pop("lr_mult", 1.0)
        group.setdefault("lr", cfg.lr * lr_mult)
        groups.append(group)
    if not groups:
        raise ValueError("the model has no trainable parameters (everything is frozen?)")
    if cfg.name == "sgd":
        return torch.optim.SGD(
            groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0,
            weight_decay=cfg.weight_decay,
        )
    if cfg.name == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimizer {cfg.name!r}")


def lr_factor_fn(cfg: SchedulerConfig, total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """The multiplier of the base lr at optimizer step ``t`` (0-based).

    Linear warm-up from ``warmup_start_factor`` to 1 over ``warmup_steps``, then the named schedule
    over the remaining steps, never below ``min_lr_ratio`` (the floor). ``step``/``multistep``
    milestones are in epochs and converted with ``steps_per_epoch`` by the caller through
    ``total_steps``/epochs; here they arrive already in steps (see ``build_scheduler``).
    """
    floor = cfg.min_lr_ratio
    main_steps = max(1, total_steps - warmup_steps)

    def main(progress: float, step_in_main: int) -> float:
        if cfg.name == "cosine":
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
        if cfg.name == "linear":
            return floor + (1 - floor) * (1 - progress)
        if cfg.name == "poly":
            return floor + (1 - floor) * (1 - progress) ** cfg.power
        if cfg.name == "constant":
            return 1.0
        if cfg.name == "onecycle":
            # Smith & Topin 2017: cosine up to the peak at pct_start, then cosine down to the floor.
            if progress < cfg.pct_start:
                p = progress / cfg.pct_start
                start = cfg.warmup_start_factor
                return start + (1 - start) * 0.5 * (1 - math.cos(math.pi * p))
            p = (progress - cfg.pct_start) / max(1e-12, 1 - cfg.pct_start)
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * p))
        raise ValueError(f"unknown scheduler {cfg.name!r}")

    def factor(step: int) -> float:
        if step < warmup_steps:
            alpha = step / warmup_steps
            return cfg.warmup_start_factor + (1 - cfg.warmup_start_factor) * alpha
        progress = min(1.0, (step - warmup_steps) / main_steps)
        return main(progress, step - warmup_steps)

    return factor


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: SchedulerConfig, epochs: int, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """A per-optimizer-step LambdaLR implementing warm-up + schedule + floor."""
    total = max(1, epochs * steps_per_epoch)
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
    if cfg.name in ("step", "multistep"):
        milestones = (
            [cfg.step_size * k for k in range(1, epochs // max(1, cfg.step_size) + 1)]
            if cfg.name == "step"
            else list(cfg.milestones)
        )
        milestone_steps = [m * steps_per_epoch for m in milestones]

        def factor(step: int) -> float:
            if step < warmup:
                return cfg.warmup_start_factor + (1 - cfg.warmup_start_factor) * step / warmup
            decays = sum(step >= m for m in milestone_steps)
            return max(cfg.min_lr_ratio, cfg.gamma**decays)

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor_fn(cfg, total, warmup))


def apply_warmup_overrides(
    optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LambdaLR, warmup_steps: int,
    cfg: SchedulerConfig, momentum: float,
) -> None:
    """YOLO-style warm-up extras, applied after ``scheduler.step()`` while in warm-up.

    The group named "bias" starts at ``cfg.warmup_bias_lr`` and falls linearly to its scheduled lr
    (a large early bias lr lets the detection heads' biases settle fast), and momentum rises from
    ``cfg.warmup_momentum`` to ``momentum`` (YOLOv5 recipe). No-ops when both are 0.
    """
    step = scheduler.last_epoch
    # step == warmup_steps lands exactly on the final values (alpha = 1) and leaves them there.
    if step > warmup_steps or (cfg.warmup_bias_lr <= 0 and cfg.warmup_momentum <= 0):
        return
    alpha = step / max(1, warmup_steps)
    for group, lr_lambda in zip(optimizer.param_groups, scheduler.lr_lambdas):
        if cfg.warmup_bias_lr > 0 and group.get("name") == "bias":
            target = group["initial_lr"] * lr_lambda(step)
            group["lr"] = cfg.warmup_bias_lr + (target - cfg.warmup_bias_lr) * alpha
        if cfg.warmup_momentum > 0 and "momentum" in group:  # SGD; Adam's betas are left alone
            group["momentum"] = cfg.warmup_momentum + (momentum - cfg.warmup_momentum) * alpha
