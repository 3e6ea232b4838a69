"""Every config value the schema accepts either works or is a one-line error naming its dotted key,
raised before any work: `cvzoo train` exits 2 and no run folder exists."""

from pathlib import Path

import pytest
import torch

from cvzoo.api import build_config
from cvzoo.cli.main import main
from cvzoo.config import ConfigError
from cvzoo.config.validate import RANGES, Range

# (override, the key the message must name): the values that used to end in a traceback, a NaN loss,
# a run that never learns or a "success" without a checkpoint.
BAD_VALUES = [
    ("data.batch_size=0", "data.batch_size"),
    ("data.val_batch_size=-1", "data.val_batch_size"),
    ("data.img_size=-8", "data.img_size"),
    ("data.workers=-2", "data.workers"),
    ("data.cache=disk", "data.cache"),
    ("classify.augment.hflip=1.5", "classify.augment.hflip"),
    ("classify.augment.scale=[0.9, 0.5]", "classify.augment.scale"),
    ("segment.augment.scale=[2.0, 0.5]", "segment.augment.scale"),
    ("segment.loss=lovasz", "segment.loss"),
    ("optim.lr=0", "optim.lr"),
    ("optim.lr=nan", "optim.lr"),
    ("optim.momentum=1", "optim.momentum"),
    ("optim.weight_decay=-0.1", "optim.weight_decay"),
    ("scheduler.warmup_epochs=-1", "scheduler.warmup_epochs"),
    ("scheduler.pct_start=0", "scheduler.pct_start"),
    ("train.epochs=0", "train.epochs"),
    ("train.val_interval=0", "train.val_interval"),
    ("train.accumulate=0", "train.accumulate"),
    ("train.ema_decay=1", "train.ema_decay"),
    ("train.early_stop_patience=-1", "train.early_stop_patience"),
    ("siamese.retrieval_k=[1, 0]", "siamese.retrieval_k[1]"),
    ("task=track", "task"),
    ("model.kwargs={nonexistent: 1}", "model.kwargs.nonexistent"),
    ("model.name=resnet_does_not_exist", "model.name"),
    ("train.device=gpu", "train.device"),
]


def _train(tmp_path: Path, *overrides: str) -> int:
    return main(["train", "--project", str(tmp_path / "runs"), "--epochs", "1", "--set", "run.progress=false",
                 "data.limit_train=32", "data.limit_val=16", *overrides])


@pytest.mark.parametrize(("override", "key"), BAD_VALUES)
def test_cli_reports_the_key_in_one_line_and_creates_no_run_folder(tmp_path, capsys, override, key):
    assert _train(tmp_path, override) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cvzoo train: error: ") and "\n" not in err
    assert key in err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(("override", "key"), BAD_VALUES)
def test_build_config_raises_naming_the_key(override, key):
    with pytest.raises(ValueError, match=key.replace("[", r"\[").replace(".", r"\.")):
        build_config(overrides=[override])


def _outside(allowed: Range) -> float:
    """A value just outside ``allowed``."""
    if allowed.low is not None:
        return allowed.low if allowed.open_low else allowed.low - 1
    return allowed.high if allowed.open_high else allowed.high + 1


@pytest.mark.parametrize("key", sorted(RANGES))
def test_every_ranged_key_rejects_a_value_outside_its_range(key):
    value = _outside(RANGES[key])
    default = build_config()
    for name in key.split("."):
        default = getattr(default, name)
    if isinstance(default, tuple):  # a tuple field: one bad item (as many items as the default)
        value = [value] * len(default)
    if isinstance(default, int) and not isinstance(default, bool):
        value = int(value)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        build_config(overrides={key: value})


def test_detection_img_size_must_be_a_multiple_of_the_stride():
    with pytest.raises(ConfigError, match=r"data\.img_size: 100 must be a multiple of 32"):
        build_config(task="detect", imgsz=100)
    assert build_config(task="detect", imgsz=96).data.img_size == 96
    assert build_config(task="classify", imgsz=100).data.img_size == 100  # no stride rule there


@pytest.mark.parametrize("task", ["classify", "detect", "segment", "siamese"])
def test_task_defaults_and_recipes_are_valid(task):
    build_config(task=task)
    for recipe in Path(__file__).resolve().parents[2].joinpath("recipes").glob("*.yaml"):
        build_config(recipe)


def test_segmentation_task_options_and_model_kwargs_pass_the_model_check():
    cfg = build_config(task="segment", overrides=["model.name=unet", "model.kwargs={base_channels: 16}",
                                                  "segment.loss=dice", "segment.class_weights=[0.5, 1, 2]"])
    assert cfg.model.kwargs == {"base_channels": 16}
    assert cfg.segment.loss == "dice" and cfg.segment.class_weights == (0.5, 1.0, 2.0)
    with pytest.raises(ConfigError, match=r"model\.kwargs\.bogus: model 'unet' takes no argument 'bogus'"):
        build_config(task="segment", overrides=["model.name=unet", "model.kwargs={bogus: 1}"])


def test_a_backbone_for_a_model_without_one_names_model_backbone():
    assert build_config(task="segment", overrides=["model.name=fcn8s", "model.backbone=resnet18"])
    with pytest.raises(ConfigError, match=r"model\.backbone: model 'unet' takes no argument 'backbone'"):
        build_config(task="segment", overrides=["model.name=unet", "model.backbone=resnet18"])


def test_backbone_keys_reach_the_model_or_are_an_error():
    # Classification and siamese models take no backbone by name: the key is an error, not ignored.
    for task in ("classify", "siamese"):
        with pytest.raises(ConfigError, match=rf"model\.backbone: the {task} task's models take no backbone"):
            build_config(task=task, overrides=["model.backbone=resnet18"])
    # Detection passes backbone_weights to the model also without a backbone name (its own backbone
    # loads them); it was dropped silently before.
    from cvzoo.tasks.detection import DetectionTask

    config = build_config(task="detect", overrides=["model.backbone_weights=w.pt"])
    assert DetectionTask(config).model_kwargs() == {"backbone_weights": "w.pt"}


def test_cuda_without_cuda_names_train_device(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["train", "--project", str(tmp_path / "runs"), "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert "train.device" in err and "no CUDA device" in err
    assert not (tmp_path / "runs").exists()


# Keys of the layout before the task sections: each error names where the key went.
MOVED_KEYS = [
    ("data.augment.mosaic=0.5", "data.augment.mosaic moved to detect.augment.mosaic"),
    ("data.augment.hflip=0", "data.augment.hflip moved to the task sections (classify.augment.hflip, "
                             "detect.augment.hflip, segment.augment.hflip, siamese.augment.hflip)"),
    ("data.augment.scale=[0.5, 1]", "data.augment.scale moved to the task sections (classify.augment.scale, "
                                    "segment.augment.scale)"),
    ("data.rect_val=false", "data.rect_val moved to detect.rect_val"),
    ("metric.margin=1", "metric.margin moved to siamese.margin"),
    ("model.kwargs={loss: dice}", "model.kwargs.loss moved to segment.loss"),
    ("model.kwargs={vflip: 0.5}", "model.kwargs.vflip moved to segment.augment.vflip"),
]


@pytest.mark.parametrize(("override", "message"), MOVED_KEYS)
def test_an_old_key_is_an_error_naming_its_new_place(override, message):
    with pytest.raises(ConfigError) as err:
        build_config(task="segment", overrides=["model.name=unet", override])
    assert message in str(err.value)


def test_an_old_recipe_fails_in_one_line_naming_the_new_keys(tmp_path, capsys):
    recipe = tmp_path / "old.yaml"
    recipe.write_text("task: detect\ndata:\n  augment:\n    mosaic: 0.5\n    hsv_h: 0.01\n")
    with pytest.raises(ConfigError, match=r"data\.augment\.mosaic moved to detect\.augment\.mosaic"):
        build_config(recipe)
    assert _train(tmp_path, "metric.eval_pairs=100") == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "unknown config key 'metric': metric.eval_pairs moved to siamese.eval_pairs" in err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(("task", "key"), [("classify", "num_classes"), ("detect", "num_classes"), ("segment", "num_classes"),
                                           ("siamese", "in_channels")])
def test_a_keyword_the_task_sets_is_an_error_in_model_kwargs(task, key):
    # It was silently replaced (classification) or a "multiple values" TypeError at build time (detection).
    with pytest.raises(ConfigError, match=rf"model\.kwargs\.{key}: the {task} task sets {key} itself"):
        build_config(task=task, overrides=[f"model.kwargs={{{key}: 3}}"])
