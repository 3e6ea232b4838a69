"""Fixtures shared across the test packages (the segmentation tests of data, models, metrics and tasks)."""

from __future__ import annotations

import os

import pytest
import torch

from cvzoo.data.synthetic import SceneConfig, write_voc_segmentation

# Two easily told apart shapes on textured backgrounds: learnable by a tiny U-Net in a few epochs.
SEGMENTATION_SCENES = SceneConfig(image_size=(64, 64), objects_per_image=(1, 3), scale_range=(0.3, 0.6),
                                  classes=("trouser", "bag"))


def pytest_configure(config):
    """Under pytest-xdist (``make test`` runs ``-n 2``) each worker computes on one thread, and so do the
    processes its tests start: two workers of two OpenMP threads each on a 2-core machine spin against
    each other (measured many times slower than one thread each)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ["OMP_NUM_THREADS"] = "1"
        torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def in_process_loading_by_default(monkeypatch):
    """``data.workers=-1`` loads in the main process in tests: worker processes would cost start-up time
    in every small run of the suite on 2 cores, and the exact-resume tests compare bit for bit, which only
    in-process loading guarantees. ``tests/engine/test_workers.py`` tests the rule itself."""
    monkeypatch.setattr("cvzoo.engine.workers.IN_PROCESS_BELOW_S", float("inf"))


@pytest.fixture
def one_thread():
    """For tests of many small ops (the segmentation tests use it for every test of their module): on a
    shared 2-core machine OpenMP threads spinning against other processes make them many times slower
    than a single thread."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture(scope="session")
def voc_scenes(tmp_path_factory):
    """A VOC-style folder: 120 train / 30 val scenes of 64x64 with classes background, trouser, bag."""
    return write_voc_segmentation(tmp_path_factory.mktemp("voc_scenes"), 120, 30, SEGMENTATION_SCENES, seed=1)
