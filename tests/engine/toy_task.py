"""A tiny task (linear rule on random features) that exercises the engine without any real data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from cvzoo.config import Config
from cvzoo.tasks.base import Evaluator, Task


class AccuracyEvaluator(Evaluator):
    def __init__(self) -> None:
        self.correct = 0
        self.total = 0

    def update(self, outputs: torch.Tensor, batch: Any) -> None:
        self.correct += int((outputs.argmax(1) == batch[1]).sum())
        self.total += len(batch[1])

    def compute(self) -> dict[str, Any]:
        return {"acc": self.correct / max(1, self.total), "count": self.total}

    def state(self) -> Any:
        return (self.correct, self.total)

    def load_states(self, states: list[Any]) -> None:
        self.correct = sum(s[0] for s in states)
        self.total = sum(s[1] for s in states)


class ToyTask(Task):
    name = "toy"
    fitness_metric = "acc"

    def __init__(self, config: Config, n_train: int = 256, n_val: int = 64, poison_at_step: int | None = None):
        super().__init__(config)
        g = torch.Generator().manual_seed(123)
        w = torch.randn(8, 3, generator=g)
        x = torch.randn(n_train + n_val, 8, generator=g)
        y = (x @ w).argmax(1)
        self.train_set = TensorDataset(x[:n_train], y[:n_train])
        self.val_set = TensorDataset(x[n_train:], y[n_train:])
        self.poison_at_step = poison_at_step
        self.steps = 0

    def build_datasets(self):
        return self.train_set, self.val_set

    def build_model(self) -> nn.Module:
        return nn.Sequential(nn.Linear(8, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.1), nn.Linear(32, 3))

    def training_step(self, model: nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        x, y = batch
        # Random noise drawn from the global RNG: resume must restore RNG states to reproduce it.
        x = x + 0.01 * torch.randn_like(x)
        loss = F.cross_entropy(model(x), y)
        self.steps += 1
        if self.poison_at_step is not None and self.steps >= self.poison_at_step:
            loss = loss * float("nan")
        return {"loss": loss}

    def validation_step(self, model: nn.Module, batch: Any, evaluator: Evaluator) -> dict[str, torch.Tensor]:
        logits = model(batch[0])
        evaluator.update(logits, batch)
        return {"loss": F.cross_entropy(logits, batch[1])}

    def build_evaluator(self) -> Evaluator:
        return AccuracyEvaluator()

    def build_inference_model(self, extras: dict[str, Any]) -> nn.Module:
        return self.build_model()

    def build_eval_dataset(self, split: str = "val"):
        return self.val_set

    def predict_files(self, model: Any, files: list[Path], device: torch.device, **options: Any) -> list[dict]:
        return [{"image": str(f)} for f in files]

    def example_input(self, batch: int = 1, imgsz: int | None = None) -> torch.Tensor:
        return torch.randn(batch, 8)
