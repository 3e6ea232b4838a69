"""``data.workers=-1``: worker processes only where loading a batch costs something (engine/workers.py)."""

from __future__ import annotations

import math
import random
import threading
import time

import numpy as np
import torch
from PIL import Image
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


def test_a_probe_that_settles_on_in_process_loading_leaves_the_detection_draws_alone(tmp_path, monkeypatch):
    """Detection's mosaic, affine, colour and flip own numpy generators, seeded in the process that first
    draws (``cvzoo.data.augment.detect``): the probe loads from a copy, so a run whose probe settles on
    in-process loading draws the augmentations of the same run with ``data.workers=0``."""
    from cvzoo.config.tasks import DetectAugment
    from cvzoo.data.datasets.detection import DetectionDataset
    from cvzoo.data.synthetic import SceneConfig, generate_dataset

    monkeypatch.setattr(workers, "cpu_count", lambda: 2)  # the probe runs (tests/conftest.py: and picks 0)
    images, annotations = generate_dataset(6, SceneConfig(size_range=(48, 64), classes=["bag"]), seed=3)
    for image, record in zip(images, annotations.images):
        Image.fromarray(image).save(tmp_path / record.file)
        record.file = str(tmp_path / record.file)

    def first_batch(requested: int) -> list:
        torch.manual_seed(0)
        dataset = DetectionDataset(annotations, img_size=64, augment=True, hyp=DetectAugment(degrees=10.0))
        assert auto_workers(torch.device("cpu"), requested, dataset, batch_size=4) == 0
        return [dataset[i] for i in range(4)]

    probed, fixed = first_batch(-1), first_batch(0)
    for (image, target, _), (same_image, same_target, _) in zip(probed, fixed, strict=True):
        assert torch.equal(image, same_image) and torch.equal(target["boxes"], same_target["boxes"])


class Locked(Timed):
    """A dataset holding a lock: it cannot be copied for the probe."""

    def __init__(self) -> None:
        super().__init__(0.0)
        self.lock = threading.Lock()


def test_a_dataset_the_probe_cannot_copy_is_not_timed_and_gets_workers(monkeypatch):
    monkeypatch.setattr(workers, "IN_PROCESS_BELOW_S", 0.02)  # the module's value (tests/conftest.py raises it)
    monkeypatch.setattr(workers, "cpu_count", lambda: 2)
    assert batch_load_seconds(Locked(), 16) == math.inf
    assert auto_workers(torch.device("cpu"), -1, Locked(), 16) == 2


def test_the_probe_copy_shares_what_only_holds_data():
    """The in-memory samples, labels, indices and the image cache are shared (copying 60,000 digits cost a
    CPU run's start-up 90 ms); the rest, where random state lives, is copied."""
    from torch.utils.data import Subset

    from cvzoo.data.cache import ImageCache
    from cvzoo.data.datasets.classification import ArrayClassificationDataset, ImageFolderDataset
    from cvzoo.engine.workers import probe_copy

    digits = ArrayClassificationDataset(np.zeros((6, 4, 4), np.uint8), [0, 1, 2, 0, 1, 2], ["a", "b", "c"],
                                        transform=Timed(0.0))
    subset = Subset(digits, [0, 2, 4])
    copied = probe_copy(subset)
    assert copied.dataset is not digits and copied.dataset.transform is not digits.transform
    assert copied.dataset.images is digits.images and copied.dataset.targets is digits.targets
    assert copied.indices is subset.indices
    folder = ImageFolderDataset([("a.png", 0)], ["a"], mode="L")
    assert probe_copy(folder).image_cache is folder.image_cache
    other = ImageCache("L")
    assert probe_copy(folder, other).image_cache is other
