"""Checkpoints without training for the deployment tests: a task's model with its initial weights, saved the
way a run saves best.pt (config, task, extras, model), so that export, val and predict read it as a trained
one. What these tests compare is one model across formats, not how well it learned."""

from __future__ import annotations

from pathlib import Path

import torch

from cvzoo import api
from cvzoo.config import config_to_dict
from cvzoo.tasks import task_class


def untrained_checkpoint(path: Path, task: str, model: str, data: str, overrides: list[str] = (),
                         adjust=None) -> Path:
    """``path`` holding an initialised ``model`` for ``task`` on ``data``; ``adjust(model)`` may change its
    weights first (e.g. raise a detector's class bias so that it detects something)."""
    cfg = api.build_config(task=task, model=model, data=data, device="cpu",
                           overrides=["run.progress=false", *overrides])
    runner = task_class(cfg.task)(cfg)
    runner.build_datasets()
    torch.manual_seed(0)
    network = runner.build_model()
    if adjust is not None:
        with torch.no_grad():
            adjust(network)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"config": config_to_dict(cfg), "task": cfg.task, "model": network.state_dict(), "ema": None,
                "extras": runner.checkpoint_extras(), "epoch": 0}, path)
    return path
