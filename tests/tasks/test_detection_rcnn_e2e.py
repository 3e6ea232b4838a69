"""A detector that resizes its own images (R-CNN, input policy "model") through the detection task:
its recipe without a flag, images at their own size (two sizes in a batch), train -> val -> predict, and
export to ONNX (one image of any size in, its final detections out) -> predict with onnxruntime."""

from __future__ import annotations

import pytest

from cvzoo import api
from cvzoo.cli.main import main
from cvzoo.data.synthetic import SceneConfig, write_yolo_dataset
from cvzoo.models import list_models
from cvzoo.models.detection.graph_nms import detections_difference
from tests.tasks.detection_rows import detections_of

MODEL = "fasterrcnn_mobilenet_v3_large_320_fpn"
pytestmark = pytest.mark.skipif(MODEL not in list_models(task="detect"), reason="R-CNN family not registered")

SCENES = SceneConfig(size_range=(48, 96), objects_per_image=(1, 2), scale_range=(0.3, 0.6), classes=["trouser", "bag"])


def test_rcnn_gets_its_own_recipe_without_a_flag():
    cfg, sources = api.build_config_with_sources(task="detect", model=MODEL)
    assert cfg.detect.augment.mosaic == 0 and cfg.train.ema is False and cfg.optim.momentum == 0.9
    assert sources["optim.momentum"] == "torchvision R-CNN model defaults"


def test_rcnn_trains_validates_and_predicts_on_images_of_their_own_size(tmp_path):
    data = write_yolo_dataset(tmp_path / "data", n_train=8, n_val=4, config=SCENES, seed=3)
    code = main(["train", "--task", "detect", "--model", MODEL, "--data", str(data), "--project", str(tmp_path / "runs"),
                 "--name", "rcnn", "--epochs", "1", "--batch", "4", "--imgsz", "96", "--device", "cpu",
                 "--set", "run.progress=false", "--set", "run.tensorboard=false", "--set", "data.workers=0"])
    assert code == 0
    run = tmp_path / "runs" / "detect" / "rcnn"
    header = (run / "results.csv").read_text().splitlines()[0].split(",")
    assert {"train/loss_classifier", "train/loss_objectness", "metrics/mAP50"} <= set(header)
    images = sorted((data.parent / "images" / "val").glob("*.jpg"))[:2]
    results = api.predict(run / "weights" / "last.pt", images, device="cpu", conf=0.0, save_dir=tmp_path / "pred")
    for result in results:
        height, width = result["size"]
        for det in result["detections"]:
            x1, y1, x2, y2 = det["box"]
            assert 0 <= x1 <= x2 <= width and 0 <= y1 <= y2 <= height  # R-CNN clips to the image

    # cvzoo export: the graph takes each image at its own size and gives the torch model's detections.
    weights = run / "weights" / "last.pt"
    (onnx_path,) = api.export(weights)
    assert onnx_path.suffix == ".onnx"
    exported = api.predict(weights, images, device="cpu", conf=0.0, backend="onnxruntime")
    for torch_result, onnx_result in zip(results, exported):
        assert onnx_result["size"] == torch_result["size"]
        expected, got = detections_of(torch_result), detections_of(onnx_result)
        assert len(got) == len(expected) > 0
        # Matched by label and nearest box: a model after one epoch scores many boxes alike, and scores
        # closer than the runtimes' float error may come out in either order.
        box, score = detections_difference(expected, got)
        assert box <= 2e-2 and score < 1e-3, (box, score)  # rows round boxes to 0.01

