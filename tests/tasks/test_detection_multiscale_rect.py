"""The detection task's multi-scale training (detect.augment.multiscale) and rectangular validation (detect.rect_val)."""

import pytest
import torch
from torch.utils.data import DataLoader

from cvzoo.cli.main import main
from cvzoo.config import Config, apply_overrides
from cvzoo.data.synthetic import SceneConfig, write_yolo_dataset
from cvzoo.engine.evaluate import run_validation
from cvzoo.engine.sampler import ResumableSampler
from cvzoo.models.detection.base import Detections
from cvzoo.models.detection.dense import DenseDetector
from cvzoo.tasks.detection import DetectionTask

CLASSES = ["trouser", "bag"]


class Recorder(DenseDetector):
    """Stands in for a detector: records what reaches it; predicts the targets it was given (an oracle)."""

    strides = (8, 16, 32)
    num_classes = 2

    def raw_outputs(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        self.images = images
        return {"images": images}

    def compute_loss(self, outputs, targets):
        self.targets = targets
        return {"loss": outputs["images"].sum() * 0}

    def decode(self, outputs):
        raise NotImplementedError

    def postprocess(self, outputs, *args, **kwargs):
        return [Detections(t["boxes"], torch.ones(len(t["boxes"])), t["labels"]) for t in self.targets]


def config(source: str = "unused", **pairs) -> Config:
    base = {"task": "detect", "model.name": "yolov8n", "data.source": source, "data.img_size": 64}
    return apply_overrides(Config(), base | pairs)


@pytest.fixture(scope="module")
def mixed_data(tmp_path_factory):
    scenes = SceneConfig(size_range=(32, 128), objects_per_image=(1, 3), scale_range=(0.2, 0.5), classes=CLASSES)
    return write_yolo_dataset(tmp_path_factory.mktemp("mixed"), n_train=4, n_val=12, config=scenes, seed=5)


def _batch():
    images = torch.rand(2, 3, 64, 64)
    targets = [{"boxes": torch.tensor([[8.0, 16, 40, 48], [0, 0, 64, 64]]), "labels": torch.tensor([0, 1])},
               {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}]
    return images, targets, [{}, {}]


def test_multiscale_training_step_resizes_batch_and_boxes():
    task = DetectionTask(config(**{"detect.augment.multiscale": True}))
    task.class_names = CLASSES
    model, batch = Recorder(), _batch()
    torch.manual_seed(0)
    sides = set()
    for _ in range(30):
        task.training_step(model, batch)
        side = model.images.shape[-1]
        assert model.images.shape == (2, 3, side, side) and side % 32 == 0 and 32 <= side <= 96
        torch.testing.assert_close(model.targets[0]["boxes"], batch[1][0]["boxes"] * side / 64)
        assert model.targets[0]["labels"].tolist() == [0, 1] and len(model.targets[1]["boxes"]) == 0
        sides.add(side)
    assert sides == {32, 64, 96}


def test_without_multiscale_the_batch_is_unchanged():
    task = DetectionTask(config())
    task.class_names = CLASSES
    model, batch = Recorder(), _batch()
    task.training_step(model, batch)
    assert model.images is batch[0]
    torch.testing.assert_close(model.targets[0]["boxes"], batch[1][0]["boxes"])


def test_rect_val_uses_the_loaders_batch_size_and_can_be_turned_off(mixed_data):
    task = DetectionTask(config(str(mixed_data), **{"data.img_size": 128, "data.batch_size": 2}))
    dataset = task.build_eval_dataset("val")  # val batches of 2 x 2 images
    assert dataset.shapes == [(96, 128)] * 4 + [(128, 128)] * 4 + [(128, 96)] * 4
    square = DetectionTask(config(str(mixed_data), **{"data.img_size": 128, "detect.rect_val": False}))
    square = square.build_eval_dataset("val")
    assert square.shapes is None and {tuple(square[i][0].shape) for i in range(len(square))} == {(3, 128, 128)}


@pytest.mark.parametrize("world_size", [1, 2])
def test_perfect_predictions_score_one_with_rect_batches(mixed_data, world_size):
    """An oracle's boxes, mapped back through each image's letterbox metadata, match the ground truth
    exactly, including when a DDP rank's strided share mixes batch shapes (the collate then pads)."""
    # At 96 px the larger scenes (up to 128 px) shrink and the smaller ones are only padded.
    task = DetectionTask(config(str(mixed_data), **{"data.img_size": 96, "data.val_batch_size": 3}))
    dataset = task.build_eval_dataset("val")
    sampler = ResumableSampler(len(dataset), shuffle=False, rank=0, world_size=world_size, pad=False)
    loader = DataLoader(dataset, batch_size=3, sampler=sampler, collate_fn=task.collate)
    if world_size == 2:
        assert len({dataset.shapes[i] for i in list(sampler)[:3]}) > 1  # a mixed batch really happens
    metrics, _ = run_validation(task, Recorder(), loader, torch.device("cpu"))
    assert metrics["mAP50-95"] == pytest.approx(1.0) and metrics["mAP50"] == pytest.approx(1.0)


def test_one_epoch_with_multiscale_trains(tmp_path):
    scenes = SceneConfig(image_size=(64, 64), objects_per_image=(1, 2), scale_range=(0.3, 0.6), classes=CLASSES)
    data = write_yolo_dataset(tmp_path / "data", n_train=8, n_val=4, config=scenes, seed=1)
    code = main(["train", "--task", "detect", "--model", "yolov8n", "--data", str(data), "--epochs", "1",
                 "--batch", "4", "--imgsz", "64", "--device", "cpu", "--project", str(tmp_path / "runs"),
                 "--name", "ms", "--set", "detect.augment.multiscale=true", "--set", "run.progress=false",
                 "--set", "run.tensorboard=false", "--set", "scheduler.warmup_epochs=0",
                 "--set", "train.nominal_batch_size=4", "--set", "run.plots=false"])
    assert code == 0
    run = tmp_path / "runs" / "detect" / "ms"
    assert (run / "weights" / "last.pt").exists()
    assert "multiscale: true" in (run / "args.yaml").read_text()


def test_torch_predict_pads_to_the_stride_not_the_square(tmp_path):
    import numpy as np
    from PIL import Image

    from cvzoo.models import create_model

    path = tmp_path / "wide.png"
    Image.fromarray(np.full((50, 90, 3), 128, np.uint8)).save(path)
    task = DetectionTask(apply_overrides(Config(), ["task=detect", "data.img_size=96"]))
    task.class_names = ["a", "b"]
    model = create_model("yolov8n", num_classes=2).eval()
    shapes = []
    model.register_forward_pre_hook(lambda module, args: shapes.append(tuple(args[0].shape[-2:])))
    result = task.predict_files(model, [path], torch.device("cpu"))[0]
    # 50x90 scaled by 96/90 is 53x96; the torch backend pads the height to 64 (stride 32), not 96.
    assert shapes == [(64, 96)]
    assert result["size"] == [50, 90]
