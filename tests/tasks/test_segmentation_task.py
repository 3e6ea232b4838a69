"""The segment task: its options (the ``segment`` section) and the model's criterion, without training."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cvzoo.api import build_config
from cvzoo.config import Config, ConfigError, apply_overrides
from cvzoo.losses import dice_loss
from cvzoo.models.segmentation.base import Segmenter
from cvzoo.tasks import build_task
from cvzoo.tasks.segmentation import SegmentationTask

# Many small ops: one compute thread (see tests/conftest.py).
pytestmark = pytest.mark.usefixtures("one_thread")


def _task(source, **options) -> SegmentationTask:
    """A unet task on ``source``; ``options``: dotted keys under ``segment``."""
    config = Config(task="segment")
    config.model.name = "unet"
    config.model.kwargs = {"base_channels": 4}
    config.data.source, config.data.img_size = str(source), 32
    return build_task(apply_overrides(config, {f"segment.{k}": v for k, v in options.items()}))


@pytest.mark.parametrize("loss", ["ce", "dice", "focal", "ce+dice", "focal+dice"])
def test_task_builds_data_model_and_every_loss(voc_scenes, loss):
    task = _task(voc_scenes, loss=loss, class_weights=[0.5, 1.0, 1.0])
    train, val = task.build_datasets()
    assert task.classes == ["background", "trouser", "bag"] and len(train) == 120 and len(val) == 30
    model = task.build_model()
    assert model.classifier.out_channels == 3
    assert model.criterion.kind == loss and model.criterion.class_weights == (0.5, 1.0, 1.0)
    assert set(model.state_dict()) == set(build_task(task.config).build_inference_model(
        task.checkpoint_extras()).state_dict())  # the criterion adds nothing to the weights
    batch = task.collate([train[0], train[1]])
    assert batch[0].shape == (2, 3, 32, 32) and batch[2].tolist() == [[32, 32, 32, 32]] * 2
    out = task.training_step(model, batch)
    assert torch.isfinite(out["loss"]) and out["loss"].requires_grad
    out["loss"].backward()


def _previous_task_loss(outputs, masks, kind, weight, gamma, dice_weight, smoothing, aux_weight):
    """The segment task's own loss (pixel_loss + training_step) before the model's criterion replaced
    it, kept verbatim as the reference the one loss path must reproduce."""

    def focal(logits, targets):
        valid = targets != 255
        safe = torch.where(valid, targets, torch.zeros_like(targets))
        log_p = F.log_softmax(logits.float(), dim=1).gather(1, safe[:, None]).squeeze(1)
        loss = -((1 - log_p.exp()) ** gamma) * log_p
        if weight is not None:
            loss = loss * weight.to(loss)[safe]
        return (loss * valid).sum() / valid.sum().clamp(min=1)

    def pixel_loss(logits, targets):
        total = logits.new_zeros((), dtype=torch.float32)
        if kind.startswith("ce"):
            total = total + F.cross_entropy(logits.float(), targets, weight=weight, ignore_index=255,
                                            label_smoothing=smoothing)
        if kind.startswith("focal"):
            total = total + focal(logits, targets)
        if kind.endswith("dice"):
            factor = 1.0 if kind == "dice" else dice_weight
            total = total + factor * dice_loss(logits.float(), targets, mode="multiclass", ignore_index=255)
        return total

    main = pixel_loss(outputs["out"], masks)
    if "aux" not in outputs:
        return {"loss": main}
    aux = pixel_loss(outputs["aux"], masks)
    return {"loss": main + aux_weight * aux, "loss_main": main.detach(), "loss_aux": aux.detach()}


@pytest.mark.parametrize("with_aux", [False, True])
@pytest.mark.parametrize("loss", ["ce", "dice", "focal", "ce+dice", "focal+dice"])
def test_the_models_criterion_gives_the_previous_task_loss(voc_scenes, loss, with_aux):
    task = _task(voc_scenes, loss=loss, class_weights=[0.5, 2.0, 1.0], focal_gamma=1.5, dice_weight=0.7)
    task.config.train.label_smoothing, task.config.train.aux_loss_weight = 0.1, 0.4
    task.build_datasets()
    model = task.build_model()
    torch.manual_seed(0)
    outputs = {"out": torch.randn(2, 3, 8, 8) * 3, "aux": torch.randn(2, 3, 8, 8) * 3}
    if not with_aux:
        del outputs["aux"]
    masks = torch.randint(0, 3, (2, 8, 8))
    masks[0, :2] = 255
    model.forward = lambda images: outputs  # fixed logits through the task's training step

    parts = task.training_step(model, (torch.zeros(2, 3, 8, 8), masks, None))
    expected = _previous_task_loss(outputs, masks, loss, torch.tensor([0.5, 2.0, 1.0]), 1.5, 0.7, 0.1, 0.4)
    assert set(parts) == set(expected)
    for key in expected:
        torch.testing.assert_close(parts[key], expected[key], rtol=0, atol=0)


def test_aux_loss_weight_comes_from_the_config(voc_scenes):
    task = _task(voc_scenes)
    task.config.train.aux_loss_weight = 0.7
    task.build_datasets()
    outputs = {"out": torch.randn(1, 3, 8, 8), "aux": torch.randn(1, 3, 8, 8)}
    masks = torch.randint(0, 3, (1, 8, 8))

    class Fixed(Segmenter):
        def forward(self, images):
            return outputs

    parts = task.training_step(Fixed(), (torch.zeros(1, 3, 8, 8), masks, None))
    expected = F.cross_entropy(outputs["out"], masks) + 0.7 * F.cross_entropy(outputs["aux"], masks)
    torch.testing.assert_close(parts["loss"], expected)


def test_augment_options_reach_the_train_transform(voc_scenes):
    train, _ = _task(voc_scenes, **{"augment.vflip": 0.5, "augment.hflip": 0.25}).build_datasets()
    assert train.transform.vflip == 0.5 and train.transform.hflip == 0.25
    train, _ = _task(voc_scenes).build_datasets()
    assert train.transform.vflip == 0.0 and train.transform.scale == (0.5, 2.0)  # the segmentation defaults


def test_bad_options(voc_scenes):
    with pytest.raises(ConfigError, match=r"segment\.loss: 'lovasz' is not one of"):
        build_config(task="segment", overrides=["model.name=unet", "segment.loss=lovasz"])
    task = _task(voc_scenes, class_weights=[1.0, 2.0])
    task.build_datasets()
    with pytest.raises(ValueError, match=r"segment\.class_weights has 2 values for 3 classes"):
        task.build_model()
    task = _task(voc_scenes)
    task.build_datasets()
    task.config.model.freeze = 2
    with pytest.raises(ValueError, match="model.freeze needs a model with a classification backbone"):
        task.build_model()


def test_empty_validation_split_is_a_clear_error(voc_scenes, tmp_path):
    import shutil

    from cvzoo.data.images import DatasetError

    copy = tmp_path / "voc"
    shutil.copytree(voc_scenes, copy)
    (copy / "ImageSets" / "Segmentation" / "val.txt").write_text("")
    with pytest.raises(DatasetError, match="lists no images"):
        _task(copy).build_datasets()
    (copy / "ImageSets" / "Segmentation" / "val.txt").unlink()
    with pytest.warns(UserWarning, match="training without validation"):
        _, val = _task(copy).build_datasets()
    assert val is None
