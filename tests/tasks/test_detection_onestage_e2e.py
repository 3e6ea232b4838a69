"""RetinaNet / FCOS (input policy "model", like R-CNN) through the detection task: their recipe without a flag,
and FCOS with a ResNet-18 backbone trained, validated and used for prediction on tiny generated scenes, then
exported to ONNX and run by onnxruntime."""

from __future__ import annotations

import pytest
import torch

from cvzoo import api
from cvzoo.cli.main import main
from cvzoo.data.synthetic import SceneConfig, write_yolo_dataset
from cvzoo.models import list_models
from tests.models.detection.test_detector_contract import _in_order_of
from tests.tasks.detection_rows import detections_of

MODEL = "fcos_resnet50_fpn"
pytestmark = pytest.mark.skipif(MODEL not in list_models(task="detect"), reason="one-stage family not registered")

SCENES = SceneConfig(size_range=(48, 80), objects_per_image=(1, 2), scale_range=(0.3, 0.6), classes=["trouser", "bag"])


@pytest.mark.parametrize(("model", "source", "optimizer", "lr"), [
    ("retinanet_resnet50_fpn", "torchvision RetinaNet", "sgd", 0.0025),
    ("retinanet_resnet50_fpn_v2", "torchvision RetinaNet v2", "adamw", 2.5e-5),
    ("fcos_resnet50_fpn", "torchvision FCOS", "sgd", 0.0025),
])
def test_the_one_stage_detectors_get_their_recipe_without_a_flag(model, source, optimizer, lr):
    cfg, sources = api.build_config_with_sources(task="detect", model=model)
    assert cfg.detect.augment.mosaic == 0 and cfg.detect.augment.hflip == 0.5 and cfg.train.ema is False
    assert cfg.optim.name == optimizer and cfg.optim.lr == lr and cfg.data.batch_size == 4 and cfg.train.epochs == 26
    assert cfg.scheduler.name == "multistep" and cfg.data.img_size == 800
    assert sources["optim.lr"] == f"{source} model defaults"


@pytest.mark.slow
def test_fcos_trains_validates_predicts_and_exports(tmp_path):
    data = write_yolo_dataset(tmp_path / "data", n_train=2, n_val=2, config=SCENES, seed=3)
    code = main(["train", "--task", "detect", "--model", MODEL, "--data", str(data), "--project", str(tmp_path / "runs"),
                 "--name", "fcos", "--epochs", "1", "--batch", "2", "--imgsz", "64", "--device", "cpu",
                 # Thresholds of the exported graph (the model's own): every candidate, as conf 0 below.
                 "--set", "model.kwargs={score_thresh: 0.0, detections_per_img: 1000}",
                 "--set", "model.backbone=resnet18", "--set", "run.progress=false", "--set", "run.tensorboard=false",
                 "--set", "run.plots=false",
                 "--set", "data.workers=0"])
    assert code == 0
    run = tmp_path / "runs" / "detect" / "fcos"
    header = (run / "results.csv").read_text().splitlines()[0].split(",")
    assert {"train/classification", "train/bbox_regression", "train/bbox_ctrness", "metrics/mAP50"} <= set(header)
    weights = run / "weights" / "last.pt"
    images = sorted((data.parent / "images" / "val").glob("*.jpg"))[:2]
    results = api.predict(weights, images, device="cpu", conf=0.0, save_dir=tmp_path / "pred")
    for result in results:
        height, width = result["size"]
        assert result["detections"], "confidence 0 keeps every candidate"
        for det in result["detections"]:
            x1, y1, x2, y2 = det["box"]
            assert 0 <= x1 <= x2 <= width and 0 <= y1 <= y2 <= height  # clipped to the image

    (onnx_path,) = api.export(weights)
    assert onnx_path.suffix == ".onnx"
    exported = api.predict(weights, images, device="cpu", conf=0.0, backend="onnxruntime")
    for torch_result, onnx_result in zip(results, exported):
        assert onnx_result["size"] == torch_result["size"]
        expected, got = detections_of(torch_result), detections_of(onnx_result)
        assert len(got) == len(expected) > 0
        # Paired greedily by label, box and score: after one epoch some boxes are clipped to the same point
        # (no area, so NMS keeps them all) and near-tied scores may come in either order.
        paired = _in_order_of((expected.boxes, expected.scores, expected.labels),
                              [got.boxes.numpy(), got.scores.numpy(), got.labels.numpy()])
        assert torch.equal(paired[2], got.labels)
        assert (paired[0] - got.boxes).abs().max() <= 2e-2 and (paired[1] - got.scores).abs().max() < 1e-3

