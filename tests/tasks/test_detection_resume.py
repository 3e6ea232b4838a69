"""A resumed detection run repeats the uninterrupted one bit for bit, augmentation included: each training
sample's augmentation is drawn from (train.seed, epoch, sample index), not from generators whose position a
checkpoint would have to hold (cvzoo.data.augment.detect.sample_randomness)."""

from __future__ import annotations

import pytest
import torch

from cvzoo.api import build_config
from cvzoo.data.synthetic import SceneConfig, write_yolo_dataset
from cvzoo.engine.checkpoint import load_checkpoint
from cvzoo.engine.trainer import Trainer, TrainingInterrupted
from cvzoo.tasks import task_class


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    config = SceneConfig(image_size=(64, 64), objects_per_image=(1, 2), classes=["trouser", "bag"])
    return write_yolo_dataset(tmp_path_factory.mktemp("resume"), n_train=8, n_val=4, config=config, seed=1)


def settings(scenes, project, *extra):
    # Mosaic, affine, HSV and flips all on (YOLO's recipe), mosaic closed for the last epoch.
    return build_config(None, ["task=detect", "model.name=yolov8n", f"data.source={scenes}", "data.img_size=64",
                               "data.batch_size=4", "data.workers=0", "train.epochs=2", "train.device=cpu",
                               f"run.project={project}", "run.progress=false", "run.tensorboard=false",
                               "run.plots=false", "scheduler.warmup_epochs=0", "train.nominal_batch_size=4",
                               "detect.augment.close_mosaic=1", *extra])


class InterruptedAt(Exception):
    pass


def interrupting_task(config, at_step: int):
    """The detection task, with Ctrl-C arriving before training step ``at_step`` (0-based, whole run)."""

    class Interrupted(task_class("detect")):
        steps = 0

        def training_step(self, model, batch):
            if type(self).steps == at_step:
                type(self).steps += 1
                raise KeyboardInterrupt
            type(self).steps += 1
            return super().training_step(model, batch)

    return Interrupted(config)


def weights(path):
    return load_checkpoint(path)["model"]


def test_a_resumed_detection_run_equals_the_uninterrupted_one(scenes, tmp_path):
    # Stopped in the middle of the first epoch (2 batches per epoch), under mosaic; the second epoch
    # (mosaic closed) starts new loading.
    at_step = 1
    full = Trainer(settings(scenes, tmp_path, "run.name=full")).fit()
    part_cfg = settings(scenes, tmp_path, "run.name=part")
    with pytest.raises(TrainingInterrupted) as info:
        Trainer(part_cfg, interrupting_task(part_cfg, at_step)).fit()
    resumed = Trainer(settings(scenes, tmp_path, f"run.resume={info.value.checkpoint}")).fit()
    expected, got = weights(full.last_checkpoint), weights(resumed.last_checkpoint)
    assert all(torch.equal(expected[key], got[key]) for key in expected)
