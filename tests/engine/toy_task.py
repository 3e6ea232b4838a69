"""A tiny task (linear rule on random features) that exercises the engine without any real data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from cvzoo.config import Config
from cvzoo.tasks.base import Evaluator, OptimizerSpec, Task


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


class ToyGAN(nn.Module):
    """A generator and a discriminator in one module; ``forward`` gives either one's loss, so DDP sees both."""

    def __init__(self) -> None:
        super().__init__()
        self.generator = nn.Sequential(nn.Linear(4, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 8))
        self.discriminator = nn.Sequential(nn.Linear(8, 16), nn.LeakyReLU(0.2), nn.Linear(16, 1))

    def forward(self, real: torch.Tensor, part: str) -> torch.Tensor:
        z = torch.randn(len(real), 4)  # from the global RNG: resume must restore it
        if part == "discriminator":
            fake = self.generator(z).detach()
            return F.softplus(-self.discriminator(real)).mean() + F.softplus(self.discriminator(fake)).mean()
        return F.softplus(-self.discriminator(self.generator(z))).mean()


class GapEvaluator(AccuracyEvaluator):
    """How far the generated mean is from the data's (lower is better)."""

    def compute(self) -> dict[str, Any]:
        return {"gap": self.correct / max(1, self.total), "count": self.total}


class ToyTwoOptimizerTask(ToyTask):
    """Two named optimizers (Adam for the discriminator on every batch, SGD for the generator on every
    second batch, each with its own schedule and clipping) and a metric where lower is better."""

    name = "toy2"
    fitness_metric = "gap"
    lower_is_better = ("gap",)

    def build_model(self) -> nn.Module:
        self.model = ToyGAN()  # kept for the DDP test, which compares the ranks' weights
        return self.model

    def optimizers(self, model: nn.Module) -> dict[str, OptimizerSpec]:
        from dataclasses import replace

        cfg = self.config
        adam = replace(cfg.optim, name="adam", lr=1e-3, betas=(0.5, 0.999))
        return {
            "discriminator": OptimizerSpec([{"params": list(model.discriminator.parameters())}], adam,
                                           replace(cfg.scheduler, name="linear"), self.discriminator_step, 1.0),
            "generator": OptimizerSpec([{"params": list(model.generator.parameters())}], cfg.optim, cfg.scheduler,
                                       self.generator_step, every=2),
        }

    def training_step(self, model: nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        raise AssertionError("a task with several optimizers trains through their steps")

    def discriminator_step(self, model: nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        self.steps += 1
        return {"loss": model(batch[0], "discriminator")}

    def generator_step(self, model: nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        return {"loss": model(batch[0], "generator")}

    def validation_step(self, model: nn.Module, batch: Any, evaluator: Evaluator) -> dict[str, torch.Tensor]:
        fake = model.generator(torch.randn(len(batch[0]), 4, generator=torch.Generator().manual_seed(0)))
        evaluator.correct += float((fake.mean(0) - batch[0].mean(0)).norm()) * len(batch[0])
        evaluator.total += len(batch[0])
        return {}

    def build_evaluator(self) -> Evaluator:
        return GapEvaluator()
