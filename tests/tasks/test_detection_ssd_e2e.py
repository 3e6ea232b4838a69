"""SSD through the detection task: its recipe and augmentation preset without a flag, images at their own
size (the model resizes them to 320 x 320), train -> val -> predict; a detect.augment key the model does
not use is an error naming the key and the model, before any run folder."""

from __future__ import annotations

import pytest

from cvzoo import api
from cvzoo.cli.main import main
from cvzoo.config import ConfigError
from cvzoo.data.synthetic import SceneConfig, write_yolo_dataset
from cvzoo.models import list_models

MODEL = "ssdlite320_mobilenet_v3_large"
pytestmark = pytest.mark.skipif(MODEL not in list_models(task="detect"), reason="SSD family not registered")

SCENES = SceneConfig(size_range=(48, 96), objects_per_image=(1, 2), scale_range=(0.3, 0.6), classes=["trouser", "bag"])


def test_ssd_models_get_their_own_recipe_and_preset_without_a_flag():
    cfg, sources = api.build_config_with_sources(task="detect", model=MODEL)
    augment = cfg.detect.augment
    assert (augment.iou_crop, augment.hflip, augment.zoom_out, augment.photometric, augment.mosaic) == (1.0, 0.5, 0, 0, 0)
    assert cfg.optim.lr == pytest.approx(0.15 * 24 / 192) and cfg.scheduler.name == "cosine"
    assert sources["optim.lr"] == "torchvision SSDlite model defaults"
    cfg = api.build_config(task="detect", model="ssd300_vgg16")
    augment = cfg.detect.augment
    assert (augment.photometric, augment.zoom_out, augment.iou_crop, augment.hflip) == (0.5, 0.5, 1.0, 0.5)
    assert cfg.optim.lr == pytest.approx(0.002 * 4 / 32) and cfg.scheduler.milestone_fractions == (80 / 120, 110 / 120)


@pytest.mark.parametrize("model", ["fasterrcnn_resnet50_fpn", "yolov8n"])
def test_an_ssd_augmentation_on_another_detector_names_the_key_and_the_model(model, tmp_path):
    with pytest.raises(ConfigError, match=rf"detect\.augment\.zoom_out=0\.5: {model} does not use"):
        api.build_config(task="detect", model=model, overrides=["detect.augment.zoom_out=0.5"])
    with pytest.raises(ConfigError, match=rf"detect\.augment\.photometric=0\.5: {model}"):
        api.train(task="detect", model=model, data=str(tmp_path / "nowhere"), project=str(tmp_path / "runs"),
                  overrides=["detect.augment.photometric=0.5"])
    assert not (tmp_path / "runs").exists()  # rejected before any run folder


def test_a_letterbox_augmentation_on_ssd_names_the_key_and_the_model():
    with pytest.raises(ConfigError, match=rf"detect\.augment\.mosaic=1\.0: {MODEL} does not use"):
        api.build_config(task="detect", model=MODEL, overrides=["detect.augment.mosaic=1.0"])
    # Its own keys, and the ones every own-size detector takes, pass.
    api.build_config(task="detect", model=MODEL, overrides=["detect.augment.zoom_out=0.5", "detect.augment.hsv_v=0.2"])


def test_ssdlite_trains_validates_and_predicts_without_a_flag(tmp_path):
    data = write_yolo_dataset(tmp_path / "data", n_train=4, n_val=2, config=SCENES, seed=3)  # one batch each
    code = main(["train", "--task", "detect", "--model", MODEL, "--data", str(data), "--project", str(tmp_path / "runs"),
                 "--name", "ssd", "--epochs", "1", "--batch", "4", "--device", "cpu",
                 "--set", "run.progress=false", "--set", "run.tensorboard=false", "--set", "data.workers=0"])
    assert code == 0
    run = tmp_path / "runs" / "detect" / "ssd"
    header = (run / "results.csv").read_text().splitlines()[0].split(",")
    assert {"train/bbox_regression", "train/classification", "metrics/mAP50"} <= set(header)
    images = sorted((data.parent / "images" / "val").glob("*.jpg"))[:2]
    results = api.predict(run / "weights" / "last.pt", images, device="cpu", conf=0.0, save_dir=tmp_path / "pred")
    assert len(results) == 2
    for result in results:
        height, width = result["size"]
        assert result["detections"], "conf 0 keeps the model's candidates"
        for det in result["detections"]:
            x1, y1, x2, y2 = det["box"]
            assert 0 <= x1 <= x2 <= width and 0 <= y1 <= y2 <= height  # clipped, mapped back to the image
