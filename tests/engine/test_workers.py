"""``data.workers=-1``: worker processes only where loading a batch costs something (engine/workers.py)."""

from __future__ import annotations

import random
import time

import numpy as np
import torch
from torch.utils.data import Dataset

from cvzoo.engine import workers
from cvzoo.engine.workers import auto_workers, batch_load_seconds


class Timed(Dataset):
    """Samples that take ``seconds`` each to load and draw from every random generator (augmentation)."""

    def __init__(self, seconds: float, size: int = 32) -> None:
        self.seconds, self.size = seconds, size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> torch.Tensor:
        if self.seconds:
            time.sleep(self.seconds)
        random.random(), np.random.rand()
        return torch.rand(3)


def test_an_explicit_count_is_kept_and_a_gpu_gets_workers(monkeypatch):
    monkeypatch.setattr(workers, "cpu_count", lambda: 6)
    assert auto_workers(torch.device("cpu"), 3, Timed(0.0), 16) == 3
    assert auto_workers(torch.device("cuda"), -1, Timed(0.0), 16) == 5
    monkeypatch.setattr(workers, "cpu_count", lambda: 64)
    assert auto_workers(torch.device("cuda"), -1) == workers.MAX_WORKERS


def test_on_a_cpu_slow_loading_gets_one_worker_per_core_and_fast_loading_none(monkeypatch):
    monkeypatch.setattr(workers, "IN_PROCESS_BELOW_S", 0.02)  # the module's value (tests/conftest.py raises it)
    monkeypatch.setattr(workers, "cpu_count", lambda: 2)
    assert auto_workers(torch.device("cpu"), -1, Timed(0.0), 64) == 0
    assert auto_workers(torch.device("cpu"), -1, Timed(0.004), 16) == 2  # 16 x 4 ms = 64 ms a batch
    monkeypatch.setattr(workers, "cpu_count", lambda: 1)
    assert auto_workers(torch.device("cpu"), -1, Timed(0.004), 16) == 0


def test_the_probe_leaves_every_random_generator_as_it_was():
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    expected = random.random(), np.random.rand(), torch.rand(1)
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    assert batch_load_seconds(Timed(0.0), 16) >= 0.0
    assert (random.random(), np.random.rand()) == expected[:2] and torch.equal(torch.rand(1), expected[2])
    assert batch_load_seconds(Timed(0.0, size=0), 16) == 0.0
