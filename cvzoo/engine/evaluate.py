"""The validation loop shared by ``Trainer.fit`` and ``cvzoo val``."""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from cvzoo.engine.device import autocast_dtype
from cvzoo.engine.distributed import all_gather_objects, all_reduce_mean
from cvzoo.tasks.base import Task


@torch.no_grad()
def run_validation(
    task: Task,
    model: nn.Module,
    loader: DataLoader,
    device: torch.device,
    amp: bool = False,
    progress: bool = False,
    description: str = "val",
) -> tuple[dict[str, Any], dict[str, float]]:
    """Evaluate ``model`` on ``loader``; returns (metrics, mean validation losses).

    Under DDP each rank evaluates its shard; evaluator states are gathered and merged so every rank
    returns the metrics of the whole validation set.
    """
    if len(loader.dataset) == 0:
        raise ValueError("the validation set is empty: nothing to evaluate")
    was_training = model.training
    model.eval()
    evaluator = task.build_evaluator()
    sums: dict[str, float] = {}
    batches = 0
    iterator = loader
    if progress:
        from tqdm import tqdm

        iterator = tqdm(loader, desc=description, leave=False, dynamic_ncols=True)
    autocast = (
        torch.autocast(device.type, dtype=autocast_dtype(device)) if amp else contextlib.nullcontext()
    )
    for batch in iterator:
        batch = task.to_device(batch, device)
        with autocast:
            losses = task.validation_step(model, batch, evaluator)
        for key, value in losses.items():
            sums[key] = sums.get(key, 0.0) + float(value)
        batches += 1
    evaluator.load_states(all_gather_objects(evaluator.state()))
    metrics = evaluator.compute()
    val_losses = all_reduce_mean({k: v / max(1, batches) for k, v in sums.items()}, device)
    model.train(was_training)
    return metrics, val_losses
