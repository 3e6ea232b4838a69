"""Instance segmentation end to end: Mask R-CNN on a generated COCO dataset with RLE masks, through the
CLI (train -> val with the COCO box and mask tables -> predict with RLE masks and overlays), and the
errors of a box-only detector under the instance task."""

from __future__ import annotations

import json

import pytest

from cvzoo import api
from cvzoo.cli.main import main
from cvzoo.config import ConfigError
from cvzoo.data.synthetic import SceneConfig, write_coco_dataset
from cvzoo.ops.masks import rle_decode

SCENES = SceneConfig(size_range=(48, 80), objects_per_image=(1, 2), scale_range=(0.35, 0.6), classes=["trouser", "bag"])
# Small inner sizes keep the CPU run short; the contract does not depend on them.
SMALL = ["--set", "model.kwargs={rpn_post_nms_top_n_train: 200, box_batch_size_per_image: 64, max_size: 128}"]


@pytest.fixture(scope="module")
def coco_data(tmp_path_factory):
    return write_coco_dataset(tmp_path_factory.mktemp("coco"), n_train=8, n_val=4, config=SCENES, seed=2)


@pytest.fixture(scope="module")
def trained(coco_data, tmp_path_factory):
    project = tmp_path_factory.mktemp("runs")
    code = main(["train", "--task", "instance", "--model", "maskrcnn_resnet50_fpn", "--data", str(coco_data),
                 "--project", str(project), "--name", "inst", "--epochs", "1", "--batch", "4", "--imgsz", "96",
                 "--device", "cpu", "--set", "run.progress=false", "--set", "run.tensorboard=false",
                 "--set", "data.workers=0", *SMALL])
    assert code == 0
    return project / "instance" / "inst"


def test_the_instance_task_defaults_to_mask_rcnn_and_its_recipe():
    cfg, sources = api.build_config_with_sources(task="instance")
    assert cfg.model.name == "maskrcnn_resnet50_fpn" and cfg.data.img_size == 800 and cfg.detect.augment.mosaic == 0
    assert sources["optim.momentum"] == "torchvision R-CNN model defaults"


def test_train_records_box_and_mask_metrics(trained):
    header = (trained / "results.csv").read_text().splitlines()[0].split(",")
    assert {"train/loss_mask", "metrics/mask_mAP50", "metrics/mask_mAP50-95", "metrics/mAP50"} <= set(header)
    metrics = json.loads((trained / "metrics.json").read_text())
    assert 0.0 <= metrics["mask_AP"] <= 1.0 and 0.0 <= metrics["AP"] <= 1.0


def test_val_prints_the_coco_box_and_mask_tables(trained, capsys):
    assert main(["val", str(trained / "weights" / "last.pt"), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "box AP (COCO bbox)" in out and "mask AP (COCO segm)" in out
    assert out.count("Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]") == 2


def test_predict_saves_rle_masks_in_the_coco_json_and_overlays(trained, coco_data, tmp_path):
    images = sorted((coco_data / "images" / "val").glob("*.jpg"))[:2]
    results = api.predict(trained / "weights" / "last.pt", images, device="cpu", conf=0.0, save_dir=tmp_path)
    rows = [row for result in results for row in result["detections"]]
    assert rows, "conf 0 keeps the model's detections"
    for result in results:
        for row in result["detections"]:
            mask = rle_decode(row["segmentation"])
            assert mask.shape == tuple(result["size"])
    coco = json.loads((tmp_path / "predictions_coco.json").read_text())
    assert all("segmentation" in row and "counts" in row["segmentation"] for row in coco)
    assert (tmp_path / f"{images[0].stem}.jpg").exists()


def test_a_box_detector_under_the_instance_task_says_what_it_is(coco_data, tmp_path):
    with pytest.raises(ConfigError, match="fasterrcnn_mobilenet_v3_large_320_fpn is a box detector "
                                                        "without a mask head"):
        api.train(task="instance", model="fasterrcnn_mobilenet_v3_large_320_fpn", data=str(coco_data), epochs=1,
                  device="cpu", project=str(tmp_path), overrides=["run.progress=false", "data.workers=0"])
    with pytest.raises(ConfigError, match="yolov8n is a box detector without a mask head"):
        api.train(task="instance", model="yolov8n", data=str(coco_data), epochs=1, device="cpu",
                  project=str(tmp_path), overrides=["run.progress=false", "data.workers=0"])
