"""Shared fixtures of the segmentation tests: one compute thread, a tiny synthetic VOC-style dataset."""

from __future__ import annotations

import pytest
import torch

from cvzoo.data.synthetic import SceneConfig, write_voc_segmentation
from tests.models.conftest import randomize_norm_stats

# Two easily told apart shapes on textured backgrounds: learnable by a tiny U-Net in a few epochs.
SCENES = SceneConfig(image_size=(64, 64), objects_per_image=(1, 3), scale_range=(0.3, 0.6),
                     classes=("trouser", "bag"))


@pytest.fixture(autouse=True)
def one_thread():
    """These tests run many small ops; on a shared 2-core machine OpenMP threads spinning against other
    processes make them many times slower than a single thread."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture(scope="session")
def voc_scenes(tmp_path_factory):
    """A VOC-style folder: 120 train / 30 val scenes of 64x64 with classes background, trouser, bag."""
    return write_voc_segmentation(tmp_path_factory.mktemp("voc_scenes"), 120, 30, SCENES, seed=1)


@pytest.fixture
def random_norm_stats():
    return randomize_norm_stats
