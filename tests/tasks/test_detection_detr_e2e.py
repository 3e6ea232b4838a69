"""DETR (input policy "model", a set-prediction detector without NMS) through the detection task: its recipe
without a flag, the reduced variant trained on tiny generated scenes in YOLO format, validated on the same
scenes written as COCO, used for prediction, exported to ONNX and run by onnxruntime."""

from __future__ import annotations

import pytest
import torch

from cvzoo import api
from cvzoo.cli.main import main
from cvzoo.data.synthetic import SceneConfig, write_coco_dataset, write_yolo_dataset
from cvzoo.models import list_models
from tests.models.detection.test_detector_contract import _in_order_of
from tests.tasks.detection_rows import detections_of

MODEL = "detr_resnet18_tiny"
pytestmark = pytest.mark.skipif(MODEL not in list_models(task="detect"), reason="DETR not registered")

SCENES = SceneConfig(size_range=(48, 80), objects_per_image=(1, 2), scale_range=(0.3, 0.6), classes=["trouser", "bag"])


def test_detr_gets_its_recipe_without_a_flag():
    cfg, sources = api.build_config_with_sources(task="detect", model="detr_resnet50")
    assert cfg.optim.name == "adamw" and cfg.optim.lr == 1e-4 and cfg.optim.backbone_lr_mult == 0.1
    assert cfg.optim.weight_decay == 1e-4 and cfg.train.clip_grad_norm == 0.1 and cfg.data.img_size == 800
    assert cfg.detect.augment.mosaic == 0 and cfg.detect.augment.hflip == 0.5 and cfg.train.ema is False
    assert sources["optim.lr"] == "DETR (Carion et al. 2020) model defaults"


@pytest.mark.slow
def test_detr_trains_validates_predicts_and_exports(tmp_path, one_thread):
    data = write_yolo_dataset(tmp_path / "data", n_train=2, n_val=2, config=SCENES, seed=3)
    code = main(["train", "--task", "detect", "--model", MODEL, "--data", str(data), "--project", str(tmp_path / "runs"),
                 "--name", "detr", "--epochs", "1", "--batch", "2", "--imgsz", "64", "--device", "cpu",
                 # The exported graph's threshold is the model's own: every query, as conf 0 below.
                 "--set", "model.kwargs={score_thresh: 0.0}", "--set", "run.progress=false",
                 "--set", "run.tensorboard=false", "--set", "run.plots=false", "--set", "data.workers=0"])
    assert code == 0
    run = tmp_path / "runs" / "detect" / "detr"
    header = (run / "results.csv").read_text().splitlines()[0].split(",")
    assert {"train/loss_ce", "train/loss_bbox", "train/loss_giou", "train/loss_aux", "metrics/mAP50"} <= set(header)
    weights = run / "weights" / "last.pt"

    # The same scenes as a COCO dataset: another format, the same metrics.
    coco = write_coco_dataset(tmp_path / "coco", n_train=2, n_val=2, config=SCENES, seed=3)
    from_yolo = api.evaluate(weights, device="cpu", plots=False, save_dir=tmp_path / "val_yolo")
    from_coco = api.evaluate(weights, data=str(coco), device="cpu", plots=False, save_dir=tmp_path / "val_coco")
    assert from_coco["mAP50"] == pytest.approx(from_yolo["mAP50"], abs=1e-6)

    images = sorted((data.parent / "images" / "val").glob("*.jpg"))
    results = api.predict(weights, images, device="cpu", conf=0.0, save_dir=tmp_path / "pred")
    for result in results:
        assert len(result["detections"]) == 20, "no NMS: at confidence 0 every one of the 20 queries is a detection"

    (onnx_path,) = api.export(weights)
    assert onnx_path.suffix == ".onnx"
    exported = api.predict(weights, images, device="cpu", conf=0.0, backend="onnxruntime")
    for torch_result, onnx_result in zip(results, exported):
        assert onnx_result["size"] == torch_result["size"]
        expected, got = detections_of(torch_result), detections_of(onnx_result)
        assert len(got) == len(expected) == 20
        # Near-tied scores of an untrained model may come in either order: rows are paired by label, box, score.
        paired = _in_order_of((expected.boxes, expected.scores, expected.labels),
                              [got.boxes.numpy(), got.scores.numpy(), got.labels.numpy()])
        assert torch.equal(paired[2], got.labels)
        assert (paired[0] - got.boxes).abs().max() <= 2e-2 and (paired[1] - got.scores).abs().max() < 1e-3

