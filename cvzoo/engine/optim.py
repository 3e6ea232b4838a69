"""Optimizers and learning-rate schedules (warm-up, a floor, YOLO's warm-up extras).

Schedules are indexed by training *batches* (iterations), not optimizer steps: the trainer advances the
scheduler by the number of batches each optimizer step consumed. With a fixed accumulation this is the
same schedule either way; it keeps the schedule right when the accumulation changes during training
(YOLO's nominal-batch ramp, see ``nominal_accumulate``).
"""

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
    kernels = implementation_flags(cfg.implementation, [p for g in groups for p in g["params"]])
    if cfg.name == "sgd":
        return torch.optim.SGD(
            groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0,
            weight_decay=cfg.weight_decay, **kernels,
        )
    if cfg.name == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay, **kernels)
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay, **kernels)
    raise ValueError(f"unknown optimizer {cfg.name!r}")


def implementation_flags(implementation: str, params: list[torch.Tensor]) -> dict[str, bool]:
    """The ``fused`` / ``foreach`` keywords of a ``torch.optim`` optimizer for ``optim.implementation``.

    PyTorch picks its batched ``foreach`` update on CUDA but the one-tensor-at-a-time loop on a CPU. On the
    2-core CPU machine of this project, nothing else running (``benchmarks/bench_optimizer_step.py``, median
    of 7 alternating rounds), the fused CPU kernels (PyTorch >= 2.4) took an SGD step of YOLOv8n's 183
    parameter tensors in 2.5 ms against the loop's 6.7 ms (foreach: 7.6 ms), and an AdamW step of
    RT-DETR-R50's 528 tensors (42.8 M values) in 36.8 ms against 138.6 ms (foreach: 165.4 ms), so ``auto``
    fuses on the CPU. Elsewhere (CUDA, MPS) ``auto`` keeps PyTorch's choice: not measured here.
    The fused and loop updates differ only by float rounding (the same formula, another evaluation order).
    """
    if implementation == "auto":
        implementation = "fused" if params and all(p.device.type == "cpu" for p in params) else "default"
    return {"fused": {"fused": True}, "foreach": {"foreach": True}, "loop": {"foreach": False},
            "default": {}}[implementation]


def lr_factor_fn(
    cfg: SchedulerConfig, total_steps: int, warmup_steps: int, steps_per_epoch: int = 1
) -> Callable[[int], float]:
    """The multiplier of the base lr at iteration ``t`` (0-based).

    A linear warm-up over ``warmup_steps`` from ``warmup_start_factor``, and the named schedule, never
    below ``min_lr_ratio`` (the floor) after warm-up. With ``cfg.warmup_prefix`` (the default) the
    schedule starts when warm-up ends and runs over the remaining steps (the warm-up ramps to 1); without
    it the schedule runs over all steps and warm-up ramps up to the schedule's value at that step, as
    YOLOv5/v8 do (their linear decay is ``lf(epoch)`` from epoch 0, warm-up interpolating towards it).
    With ``cfg.per_epoch`` the schedule holds its value from the first step of each epoch (of
    ``steps_per_epoch`` steps) to the last, as an epoch-stepped PyTorch scheduler does (YOLO's); the
    warm-up ramp still moves every step.
    The returned function carries ``.schedule(t)``: the schedule without the warm-up ramp, the target of
    the bias-lr warm-up in ``apply_warmup_overrides``.
    """
    floor = cfg.min_lr_ratio
    offset = warmup_steps if cfg.warmup_prefix else 0
    main_steps = max(1, total_steps - offset)

    def main(progress: float) -> float:
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

    def schedule(step: int) -> float:
        if cfg.per_epoch:
            step -= step % steps_per_epoch
        return main(min(1.0, max(0, step - offset) / main_steps))

    return _with_warmup(schedule, cfg, warmup_steps)


def _with_warmup(schedule: Callable[[int], float], cfg: SchedulerConfig, warmup_steps: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup_steps:
            ramp = cfg.warmup_start_factor + (1 - cfg.warmup_start_factor) * step / warmup_steps
            return ramp * (1.0 if cfg.warmup_prefix else schedule(step))
        return schedule(step)

    factor.schedule = schedule  # type: ignore[attr-defined]
    return factor


def nominal_accumulate(
    nominal_batch_size: int, batch_size: int, step: float = math.inf, warmup_steps: int = 0
) -> int:
    """Batches per optimizer step for a nominal batch size (YOLOv5/v8's ``nbs``) at iteration ``step``.

    After warm-up (and without ``step``): ``round(nbs / batch)``. During warm-up YOLO ramps it linearly from 1 (an optimizer step
    every batch) to that value, so that the first iterations take many small steps while the lr is low.
    """
    full = max(1, round(nominal_batch_size / batch_size))
    if step >= warmup_steps:
        return full
    return max(1, round(1 + (nominal_batch_size / batch_size - 1) * step / warmup_steps))


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: SchedulerConfig, epochs: int, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """A LambdaLR implementing warm-up + schedule + floor, stepped once per iteration (see the module doc)."""
    total = max(1, epochs * steps_per_epoch)
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
    if cfg.name in ("step", "multistep"):
        milestones = (
            [cfg.step_size * k for k in range(1, epochs // max(1, cfg.step_size) + 1)]
            if cfg.name == "step"
            else [round(f * epochs) for f in cfg.milestone_fractions] if cfg.milestone_fractions
            else list(cfg.milestones)
        )
        milestone_steps = [m * steps_per_epoch for m in milestones]

        def schedule(step: int) -> float:
            decays = sum(step >= m for m in milestone_steps)
            return max(cfg.min_lr_ratio, cfg.gamma**decays)

        return torch.optim.lr_scheduler.LambdaLR(optimizer, _with_warmup(schedule, cfg, warmup))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor_fn(cfg, total, warmup, steps_per_epoch))


def apply_warmup_overrides(
    optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LambdaLR, warmup_steps: int,
    cfg: SchedulerConfig, momentum: float,
) -> None:
    """YOLO-style warm-up extras, applied after ``scheduler.step()`` while in warm-up.

    The bias groups (named "bias" or "<part>_bias") start at ``cfg.warmup_bias_lr`` and falls linearly to its scheduled lr
    (the schedule's value without the warm-up ramp, as YOLOv5/v8 interpolate towards
    ``initial_lr * lf(epoch)``; a large early bias lr lets the detection heads' biases settle fast), and
    momentum rises from ``cfg.warmup_momentum`` to ``momentum`` (YOLOv5 recipe). No-ops when both are 0.
    """
    step = scheduler.last_epoch
    # step == warmup_steps lands exactly on the final values (alpha = 1) and leaves them there.
    if step > warmup_steps or (cfg.warmup_bias_lr <= 0 and cfg.warmup_momentum <= 0):
        return
    alpha = step / max(1, warmup_steps)
    for group, lr_lambda in zip(optimizer.param_groups, scheduler.lr_lambdas):
        if cfg.warmup_bias_lr > 0 and str(group.get("name", "")).split("_")[-1] == "bias":
            target = group["initial_lr"] * lr_lambda.schedule(step)
            group["lr"] = cfg.warmup_bias_lr + (target - cfg.warmup_bias_lr) * alpha
        if cfg.warmup_momentum > 0 and "momentum" in group:  # SGD; Adam's betas are left alone
            group["momentum"] = cfg.warmup_momentum + (momentum - cfg.warmup_momentum) * alpha
