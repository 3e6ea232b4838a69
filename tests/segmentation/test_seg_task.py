"""The segment task's losses and options (the ``segment`` section), without training."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cvzoo.api import build_config
from cvzoo.config import Config, ConfigError, apply_overrides
from cvzoo.tasks import build_task
from cvzoo.tasks.segmentation import SegmentationTask, softmax_focal_loss


def _task(source, **options) -> SegmentationTask:
    """A unet task on ``source``; ``options``: dotted keys under ``segment``."""
    config = Config(task="segment")
    config.model.name = "unet"
    config.model.kwargs = {"base_channels": 4}
    config.data.source, config.data.img_size = str(source), 32
    return build_task(apply_overrides(config, {f"segment.{k}": v for k, v in options.items()}))


def test_focal_loss_reduces_to_cross_entropy_at_gamma_zero():
    torch.manual_seed(0)
    logits, targets = torch.randn(2, 4, 5, 6), torch.randint(0, 4, (2, 5, 6))
    targets[0, 0] = 255
    ce = F.cross_entropy(logits, targets, ignore_index=255)
    torch.testing.assert_close(softmax_focal_loss(logits, targets, gamma=0.0), ce)
    assert softmax_focal_loss(logits, targets, gamma=2.0) < ce  # easy pixels are down-weighted
    weight = torch.tensor([1.0, 2.0, 0.5, 1.0])
    weighted = F.cross_entropy(logits, targets, weight=weight, ignore_index=255, reduction="none").sum()
    torch.testing.assert_close(softmax_focal_loss(logits, targets, 0.0, weight) * (targets != 255).sum(), weighted)


@pytest.mark.parametrize("loss", ["ce", "dice", "focal", "ce+dice", "focal+dice"])
def test_task_builds_data_model_and_every_loss(voc_scenes, loss):
    task = _task(voc_scenes, loss=loss, class_weights=[0.5, 1.0, 1.0])
    train, val = task.build_datasets()
    assert task.classes == ["background", "trouser", "bag"] and len(train) == 120 and len(val) == 30
    model = task.build_model()
    assert model.classifier.out_channels == 3
    batch = task.collate([train[0], train[1]])
    assert batch[0].shape == (2, 3, 32, 32) and batch[2].tolist() == [[32, 32, 32, 32]] * 2
    out = task.training_step(model, batch)
    assert torch.isfinite(out["loss"]) and out["loss"].requires_grad
    out["loss"].backward()


def test_aux_loss_weight_comes_from_the_config(voc_scenes):
    task = _task(voc_scenes)
    task.config.train.aux_loss_weight = 0.7
    task.build_datasets()
    outputs = {"out": torch.randn(1, 3, 8, 8), "aux": torch.randn(1, 3, 8, 8)}
    masks = torch.randint(0, 3, (1, 8, 8))

    class Fixed(torch.nn.Module):
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
        task.pixel_loss(torch.randn(1, 3, 4, 4), torch.zeros(1, 4, 4, dtype=torch.int64))
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
