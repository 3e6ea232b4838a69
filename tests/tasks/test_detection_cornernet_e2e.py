"""CornerNet through the detection task: its recipe without a flag, train -> val -> predict on YOLO-format
synthetic scenes and on a COCO-format copy, test-time augmentation, and ONNX export -> predict with
onnxruntime (decoded corner pairs out of the graph, NMS outside as for YOLO, or inside with --nms)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cvzoo import api
from cvzoo.cli.main import main
from cvzoo.data.synthetic import SceneConfig, write_coco_dataset, write_yolo_dataset
from cvzoo.models.detection.graph_nms import detections_difference
from tests.tasks.detection_rows import detections_of

SCENES = SceneConfig(size_range=(48, 96), objects_per_image=(1, 2), scale_range=(0.3, 0.6), classes=["trouser", "bag"])
COMMON = ["--epochs", "1", "--batch", "4", "--imgsz", "64", "--device", "cpu", "--set", "run.progress=false",
          "--set", "run.tensorboard=false", "--set", "data.workers=0"]


def test_cornernet_gets_its_own_recipe_without_a_flag():
    cfg, sources = api.build_config_with_sources(task="detect", model="cornernet")
    assert cfg.optim.name == "adamw" and cfg.detect.augment.mosaic == 0 and cfg.data.img_size == 128
    assert sources["optim.name"].startswith("CornerNet")
    assert api.build_config(task="detect", model="cornernet_hourglass104").data.img_size == 512


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("cornernet")
    data = write_yolo_dataset(root / "data", n_train=8, n_val=4, config=SCENES, seed=3)
    assert main(["train", "--task", "detect", "--model", "cornernet", "--data", str(data), "--project",
                 str(root / "runs"), "--name", "cn", *COMMON]) == 0
    return root / "runs" / "detect" / "cn", data


@pytest.mark.slow
def test_cornernet_trains_validates_predicts_and_exports(trained, tmp_path, capsys):
    run, data = trained
    header = (run / "results.csv").read_text().splitlines()[0].split(",")
    assert {"train/heatmap", "train/pull", "train/push", "train/offset", "val/heatmap", "metrics/mAP50"} <= set(header)
    weights = run / "weights" / "last.pt"
    images = sorted((data.parent / "images" / "val").glob("*.jpg"))[:2]
    results = api.predict(weights, images, device="cpu", conf=0.0)
    assert all(result["detections"] for result in results)

    # Test-time augmentation: the dense base merges the decoded pairs of the flipped / scaled passes.
    assert main(["val", str(weights), "--augment", "--json", "--device", "cpu",
                 "--save-dir", str(tmp_path / "val")]) == 0
    assert 0.0 <= json.loads(capsys.readouterr().out)["mAP50"] <= 1.0
    augmented = api.predict(weights, images[:1], device="cpu", conf=0.0, augment=True)[0]
    assert augmented["detections"] and augmented["detections"] != results[0]["detections"]

    # Export: the graph gives the decoded corner pairs [1, K^2, 4 + C]; onnxruntime + the same NMS agree.
    (onnx_path,) = api.export(weights, out=tmp_path / "plain")
    exported = api.predict(weights, images, device="cpu", conf=0.0, backend="onnxruntime", onnx=onnx_path)
    for torch_result, onnx_result in zip(results, exported):
        expected, got = detections_of(torch_result), detections_of(onnx_result)
        assert len(got) == len(expected) > 0
        box, score = detections_difference(expected, got)
        assert box <= 2e-2 and score < 1e-3, (box, score)  # rows round boxes to 0.01


@pytest.mark.slow
def test_cornernet_trains_on_a_coco_dataset(tmp_path):
    data = write_coco_dataset(tmp_path / "coco", n_train=4, n_val=2, config=SCENES, seed=4)
    assert main(["train", "--task", "detect", "--model", "cornernet", "--data", str(data), "--project",
                 str(tmp_path / "runs"), "--name", "coco", *COMMON]) == 0
    rows = (tmp_path / "runs" / "detect" / "coco" / "results.csv").read_text().splitlines()
    values = dict(zip(rows[0].split(","), rows[1].split(",")))
    assert np.isfinite(float(values["train/loss"])) and float(values["train/loss"]) > 0

