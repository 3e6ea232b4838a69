"""``data.limit_train`` / ``data.limit_val`` in every task: one rule (``Task.kept_indices``), the same counts.

The training split keeps ``limit_train`` samples, any other split ``limit_val``, also when evaluated
(``cvzoo val --split train``); a task whose samples have one class keeps each class's first in turn.
"""

from __future__ import annotations

from collections import Counter

import pytest
from torch.utils.data import Subset

from cvzoo.api import build_config
from cvzoo.data.synthetic import SceneConfig, write_yolo_dataset
from cvzoo.data.synthetic_video import write_motion_dataset
from cvzoo.tasks import build_task

LIMITS = ["data.limit_train=20", "data.limit_val=9"]
SCENES = SceneConfig(image_size=(64, 64), objects_per_image=(1, 2), classes=["trouser", "bag"])


def _labels(dataset) -> list[int]:
    """The class of each sample of a ``Subset`` of a dataset with ``targets``."""
    assert isinstance(dataset, Subset)
    return [dataset.dataset.targets[i] for i in dataset.indices]


def _task(*overrides: str):
    """The task of the config ``cvzoo train`` builds (task defaults, the model's recipe) with ``LIMITS``."""
    return build_task(build_config(None, [*LIMITS, "train.device=cpu", *overrides]))


@pytest.mark.parametrize("name", ["classify", "gan"])
def test_classification_sources_keep_each_classs_first_in_turn(name):
    task = _task(f"task={name}", "data.source=fashion_mnist_sample",
                 "model.name=" + ("lenet_mnist" if name == "classify" else "dcgan_28"))
    train, val = task.build_datasets()
    assert len(train) == 20 and len(val) == 9
    assert Counter(_labels(train)) == {c: 2 for c in range(10)}  # the bundled sample's 10 classes, 2 each
    assert len(set(_labels(val))) == 9
    assert len(task.build_eval_dataset("train")) == 20  # the train split's limit, evaluated or not


def test_siamese_limits_cap_the_images_of_the_classes_each_split_uses():
    task = _task("task=siamese", "data.source=fashion_mnist_sample", "model.name=lenet_mnist",
                 "siamese.heldout_classes=[7, 8, 9]")
    train, val = task.build_datasets()
    assert len(train) == 20 and len(val) == 9
    # training: the 7 seen classes, each's first in turn (3, 3, 3, 3, 3, 3, 2); evaluation: 3 of each held-out
    assert sorted(Counter(train.targets).values()) == [2, 3, 3, 3, 3, 3, 3] and max(train.targets) < 7
    assert Counter(val.dataset.targets) == {7: 3, 8: 3, 9: 3}
    two_views = _task("task=siamese", "data.source=fashion_mnist_sample", "model.name=lenet_mnist",
                      "siamese.instance_weight=0.5")
    assert len(two_views.build_datasets()[0]) == 20


def test_segmentation_keeps_the_first_images(voc_scenes):
    task = _task("task=segment", f"data.source={voc_scenes}", "model.name=unet", "data.img_size=64")
    train, val = task.build_datasets()
    assert (len(train), len(val)) == (20, 9) and list(train.indices) == list(range(20))
    assert len(task.build_eval_dataset("train")) == 20


def test_detection_keeps_the_first_images(tmp_path):
    root = write_yolo_dataset(tmp_path, n_train=24, n_val=12, config=SCENES, seed=1)
    task = _task("task=detect", f"data.source={root}", "model.name=yolov8n", "data.img_size=64")
    train, val = task.build_datasets()
    assert (len(train), len(val)) == (20, 9)
    everything = _task("task=detect", f"data.source={root}", "model.name=yolov8n", "data.limit_train=0",
                       "data.limit_val=0")
    assert [r.file for r in train.images] == [r.file for r in everything.build_datasets()[0].images[:20]]
    assert len(task.build_eval_dataset("train")) == 20


def test_video_keeps_each_classs_first_clips_in_turn(tmp_path):
    root = write_motion_dataset(tmp_path, 30, 12)
    task = _task("task=video", f"data.source={root}", "model.name=cnn_gru", "model.backbone=lenet",
                 "video.clips_per_video=1", "video.frames=6", "video.stride=1")
    train, val = task.build_datasets()
    assert (len(train), len(val)) == (20, 9)
    assert len(task.build_eval_dataset("train")) == 20
