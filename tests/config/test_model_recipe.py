"""A detector's default recipe is the model's (``Detector.default_recipe``): ``build_config`` applies it
after the task defaults and before anything the user wrote, and names it among the settings' sources."""

from __future__ import annotations

import pytest

from cvzoo import api
from cvzoo.models.detection.yolo_family import YOLO_RECIPE
from cvzoo.models.registry import model_recipe


def test_the_default_detector_trains_with_the_yolo_recipe_without_a_flag():
    cfg, sources = api.build_config_with_sources(task="detect")
    assert cfg.model.name == "yolov8n"
    assert cfg.optim.momentum == 0.937 and cfg.train.nominal_batch_size == 64 and cfg.detect.augment.close_mosaic == 10
    assert sources["optim.momentum"] == "YOLO model defaults" and sources["model.name"] == "detect task defaults"
    layers = list(dict.fromkeys(sources.values()))
    assert layers == ["detect task defaults", "YOLO model defaults", "flags"]  # flags: task=detect


def test_the_user_overrides_the_model_recipe_in_every_layer(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("task: detect\nmodel:\n  name: yolov5n\noptim:\n  lr: 0.02\n")
    cfg, sources = api.build_config_with_sources(recipe, overrides=["train.ema=false"], epochs=2)
    assert cfg.optim.lr == 0.02 and sources["optim.lr"] == f"recipe {recipe}"
    assert cfg.train.ema is False and sources["train.ema"] == "--set"
    assert cfg.optim.momentum == 0.937 and sources["optim.momentum"] == "YOLO model defaults"
    # The task defaults' one key (model.name) is the recipe's here, so that layer has nothing left to show.
    assert list(dict.fromkeys(sources.values())) == ["YOLO model defaults", f"recipe {recipe}", "flags", "--set"]


def test_a_model_named_only_on_the_command_line_still_brings_its_recipe():
    cfg, sources = api.build_config_with_sources(task="detect", overrides=["model.name=yolov3_tiny"])
    assert cfg.model.name == "yolov3_tiny" and cfg.scheduler.warmup_bias_lr == YOLO_RECIPE["scheduler.warmup_bias_lr"]


@pytest.mark.parametrize("name, task", [("resnet18", "classify"), ("yolov8n", "classify"), ("no_such_model", "detect")])
def test_models_without_a_recipe_for_the_task_add_no_layer(name, task):
    assert model_recipe(name, task) == ("", {})


@pytest.mark.parametrize("model, task", [("yolov8n", "detect"), ("fasterrcnn_resnet50_fpn", "detect"),
                                         ("maskrcnn_resnet50_fpn", "instance"), ("unet", "segment"),
                                         ("resnet18", "classify")])
def test_the_task_comes_from_the_model_when_none_is_named(model, task):
    cfg, sources = api.build_config_with_sources(model=model, data="somewhere")
    assert cfg.task == task and sources["task"] == f"task of model {model}"
    layers = list(dict.fromkeys(sources.values()))
    assert layers[0] == f"task of model {model}"
    if task in ("detect", "instance"):  # the model's recipe still comes after the task defaults
        assert layers[1].endswith("model defaults")
    assert api.build_config(overrides=[f"model.name={model}"]).task == task


def test_a_stated_task_wins_and_a_mismatch_is_still_an_error():
    assert api.build_config(model="maskrcnn_resnet50_fpn", task="detect").task == "detect"
    with pytest.raises(api.ConfigError, match="not a detector"):
        api.build_config(model="resnet18", task="detect")
    assert api.build_config(overrides=["model.name=maskrcnn_resnet50_fpn", "task=detect"]).task == "detect"
    with pytest.raises(api.ConfigError, match="unknown model 'no_such_model_x'"):
        api.build_config(model="no_such_model_x")
