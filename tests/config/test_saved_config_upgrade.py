"""Checkpoints written before the task sections keep loading: their saved configuration is read in the
new layout (``cvzoo.config.moved.upgrade_saved_config``); recipes are not upgraded."""

from __future__ import annotations

import torch

from cvzoo import api
from cvzoo.config import TASKS, Config, SegmentAugment, TaskSpec, config_to_dict, from_dict
from cvzoo.config.moved import upgrade_saved_config
from cvzoo.engine.checkpoint import load_checkpoint


def test_a_segment_run_of_the_old_layout_is_read_in_the_new_one():
    old = {
        "task": "segment",
        "model": {"name": "unet", "kwargs": {"base_channels": 4, "loss": "focal+dice", "class_weights": [1, 2],
                                             "vflip": 0.5}},
        "data": {"source": "scenes", "augment": {"hflip": 0.25, "scale": [0.08, 1.0], "mosaic": 1.0},
                 "rect_val": False},
        "metric": {"embedding_dim": 32, "loss": "supcon"},
    }
    cfg = from_dict(Config, upgrade_saved_config(old))
    assert cfg.model.kwargs == {"base_channels": 4} and cfg.data.source == "scenes"
    assert cfg.segment.loss == "focal+dice" and cfg.segment.class_weights == (1.0, 2.0)
    # The old scale default meant the segmentation one; hflip and vflip come from their old places.
    assert cfg.segment.augment == SegmentAugment(hflip=0.25, vflip=0.5)
    assert cfg.detect.rect_val is False and cfg.detect.augment.mosaic == 1.0
    assert cfg.siamese.embedding_dim == 32 and cfg.siamese.loss == "supcon"
    assert cfg.classify == Config().classify  # another task's options stay at their defaults

    old["data"]["augment"]["scale"] = [0.8, 1.25]  # a scale the user set stays
    assert from_dict(Config, upgrade_saved_config(old)).segment.augment.scale == (0.8, 1.25)


def test_a_current_config_comes_back_unchanged():
    for task in TASKS:
        saved = config_to_dict(api.build_config(task=task))
        assert upgrade_saved_config(saved) == saved


def test_a_checkpoint_of_the_old_layout_loads(monkeypatch, tmp_path):
    monkeypatch.setitem(TASKS, "toy", TaskSpec("tests.engine.toy_task:ToyTask", "classify"))
    result = api.train(task="toy", epochs=1, device="cpu", project=str(tmp_path), overrides=[
        "run.progress=false", "run.tensorboard=false", "run.plots=false", "data.workers=0",
        "classify.augment.hflip=0.25", "siamese.margin=0.75"])
    state = load_checkpoint(result.last_checkpoint)
    new = state["config"]
    old = {key: value for key, value in new.items() if key not in ("classify", "detect", "segment", "siamese")}
    old["data"] = {**new["data"], "augment": {**new["classify"]["augment"], "mosaic": 1.0},
                   "rect_val": new["detect"]["rect_val"]}
    old["metric"] = {key: value for key, value in new["siamese"].items() if key != "augment"}
    state["config"] = old
    path = tmp_path / "old.pt"
    torch.save(state, path)

    task, model, _ = api.load_trained(path)
    assert task.config == from_dict(Config, new)
    assert task.config.classify.augment.hflip == 0.25 and task.config.siamese.margin == 0.75
