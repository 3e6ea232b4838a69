"""train -> val -> predict -> export of a tiny U-Net on synthetic VOC-style scenes, through the CLI."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from cvzoo.cli.main import main

# Many small ops: one compute thread (see tests/conftest.py).
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, voc_scenes):
    root = tmp_path_factory.mktemp("seg")
    saved = torch.get_num_threads()
    torch.set_num_threads(1)  # module fixtures run before the per-test one_thread fixture
    try:
        code = main([
            "train", "--task", "segment", "--model", "unet", "--data", str(voc_scenes), "--epochs", "8",
            "--batch", "8", "--imgsz", "64", "--lr", "0.005", "--optimizer", "adam", "--device", "cpu",
            "--project", str(root), "--name", "e2e", "--set", "model.kwargs={base_channels: 8}",
            "--set", "segment.augment.scale=[0.8, 1.25]", "--set", "optim.weight_decay=0",
            "--set", "run.progress=false", "--set", "run.tensorboard=false",
        ])
    finally:
        torch.set_num_threads(saved)
    assert code == 0
    return root / "segment" / "e2e"


def test_train_writes_the_run_folder(trained_run):
    for name in ("args.yaml", "results.csv", "results.png", "confusion_matrix.png", "per_class_iou.csv",
                 "val_batch0_pred.jpg", "weights/last.pt", "weights/best.pt"):
        assert (trained_run / name).exists(), name
    header = (trained_run / "results.csv").read_text().splitlines()[0].split(",")
    assert {"train/loss", "val/loss", "metrics/mIoU", "metrics/pixel_acc", "metrics/mean_acc", "metrics/fwIoU",
            "metrics/mDice"} <= set(header)
    rows = list(csv.DictReader((trained_run / "per_class_iou.csv").open()))
    assert [r["class"] for r in rows] == ["background", "trouser", "bag"]


def test_val_is_clearly_better_than_chance(trained_run, tmp_path, capsys):
    assert main(["val", str(trained_run / "weights/best.pt"), "--json", "--device", "cpu",
                 "--save-dir", str(tmp_path / "val")]) == 0
    metrics = json.loads(capsys.readouterr().out)
    # Predicting background everywhere scores mIoU ~0.27 here (background IoU ~0.8, the two classes 0).
    assert metrics["mIoU"] > 0.5 and metrics["pixel_acc"] > 0.8  # measured: 0.64, 0.90
    assert "bag" in metrics["table"]
    for name in ("per_class_iou.csv", "confusion_matrix.png", "val_batch0_pred.jpg"):
        assert (tmp_path / "val" / name).exists(), name


def test_predict_writes_masks_and_overlays(trained_run, voc_scenes, tmp_path, capsys):
    images = sorted((voc_scenes / "JPEGImages").glob("val_*.jpg"))[:2]
    assert main(["predict", str(trained_run / "weights/best.pt"), *map(str, images), "--format", "csv",
                 "--save", str(tmp_path / "pred"), "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "image,class,index,pixels,fraction" and any(",background,0," in line for line in lines)
    for image in images:
        mask = Image.open(tmp_path / "pred" / f"{image.stem}_mask.png")
        assert mask.mode == "P" and mask.size == (64, 64)
        assert set(np.unique(np.asarray(mask)).tolist()) <= {0, 1, 2}
        assert (tmp_path / "pred" / f"{image.stem}_overlay.jpg").exists()
    saved = json.loads((tmp_path / "pred" / "predictions.json").read_text())
    assert len(saved) == 2 and "mask" not in saved[0] and abs(sum(saved[0]["classes"].values()) - 1) < 1e-6


def test_export_onnx_and_predict_with_onnxruntime(trained_run, voc_scenes, tmp_path, capsys):
    from cvzoo.api import predict

    out = tmp_path / "unet"
    assert main(["export", str(trained_run / "weights/best.pt"), "--out", str(out)]) == 0  # parity-checked
    assert (tmp_path / "unet.onnx").exists()
    image = sorted((voc_scenes / "JPEGImages").glob("val_*.jpg"))[0]
    torch_result = predict(trained_run / "weights/best.pt", image, device="cpu")[0]
    onnx_result = predict(trained_run / "weights/best.pt", image, device="cpu", backend="onnxruntime",
                          onnx=tmp_path / "unet.onnx")[0]
    assert onnx_result["mask"].shape == (64, 64)
    assert (onnx_result["mask"] == torch_result["mask"]).mean() > 0.99
