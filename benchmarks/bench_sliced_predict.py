"""Sliced vs whole-image prediction on large images with many small objects (issue #21's figure).

    .venv/bin/python benchmarks/bench_sliced_predict.py [--epochs 20] [--root runs/bench_sliced]

A yolov8n is trained from scratch at 320 px on generated scenes whose objects are 25-48 px (4-10 per
scene). The test images are 1280 px scenes holding 60-120 objects of the same pixel size: predicted whole
(resized to 320 px, every object shrinks 4x below what the model learned), and sliced into 320 px tiles with
0.2 overlap plus the whole image (``--slice 320``). Printed: recall and precision at IoU 0.5 (same class,
confidence 0.25), mean seconds per image for each, alternating the two after a warm-up.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from _timing import alternate, median

from cvzoo import api
from cvzoo.data.synthetic import SceneConfig, write_yolo_dataset
from cvzoo.ops.boxes import box_iou

CLASSES = ["trouser", "bag", "sneaker"]


def read_yolo_labels(label: Path, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    rows = np.loadtxt(label, ndmin=2) if label.stat().st_size else np.zeros((0, 5))
    cx, cy, w, h = rows[:, 1] * width, rows[:, 2] * height, rows[:, 3] * width, rows[:, 4] * height
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1), rows[:, 0].astype(int)


def match(pred: dict, truth_boxes: np.ndarray, truth_labels: np.ndarray) -> tuple[int, int, int]:
    """Greedy matching by score at IoU >= 0.5, same class: (true positives, predictions, objects)."""
    rows = sorted(pred["rows"], key=lambda r: -r["score"])
    taken = np.zeros(len(truth_boxes), bool)
    if rows and len(truth_boxes):
        ious = box_iou(torch.tensor([r["box"] for r in rows]), torch.tensor(truth_boxes, dtype=torch.float32)).numpy()
    hits = 0
    for i, row in enumerate(rows):
        if not len(truth_boxes):
            break
        candidates = np.where((truth_labels == row["label"]) & ~taken, ious[i], 0.0)
        best = int(candidates.argmax())
        if candidates[best] >= 0.5:
            taken[best] = True
            hits += 1
    return hits, len(rows), len(truth_boxes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--root", default="runs/bench_sliced")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    root = Path(args.root)
    train_scenes = SceneConfig(image_size=(320, 320), objects_per_image=(4, 10), scale_range=(0.08, 0.15),
                               classes=CLASSES)
    data = write_yolo_dataset(root / "train_scenes", n_train=240, n_val=40, config=train_scenes, seed=0)
    started = time.perf_counter()
    result = api.train(task="detect", model="yolov8n", data=str(data), epochs=args.epochs, batch=16, imgsz=320,
                       project=str(root / "runs"), name="small_objects", exist_ok=True)
    print(f"trained {args.epochs} epochs in {time.perf_counter() - started:.0f} s; "
          f"val mAP50 at 320 px: {result.metrics.get('metrics/mAP50', float('nan')):.3f}")
    large = SceneConfig(image_size=(1280, 1280), objects_per_image=(60, 120), scale_range=(0.02, 0.0375),
                        classes=CLASSES, placement_attempts=50)
    test = write_yolo_dataset(root / "large_scenes", n_train=1, n_val=5, config=large, seed=1).parent
    images = sorted((test / "images" / "val").glob("*.jpg"))
    truth = [read_yolo_labels(test / "labels" / "val" / f"{p.stem}.txt", 1280, 1280) for p in images]
    weights = result.best_checkpoint
    modes = {"whole image": {}, "sliced 320 px": {"slice": 320, "slice_overlap": 0.2}}
    predictions: dict[str, list] = {}

    def run(mode: str):
        def go() -> None:
            predictions[mode] = api.predict(weights, images, device="cpu", conf=0.25, **modes[mode])
        return go

    times = alternate({mode: run(mode) for mode in modes}, repeats=args.repeats, warmup=1)
    print(f"{len(images)} images of 1280 px, {sum(len(t[0]) for t in truth)} objects of 25-48 px")
    print(f"{'mode':<16} {'recall':>7} {'precision':>9} {'s/image':>8}")
    for mode in modes:
        hits, preds, objects = map(sum, zip(*(match(p, *t) for p, t in zip(predictions[mode], truth))))
        print(f"{mode:<16} {hits / max(objects, 1):7.3f} {hits / max(preds, 1):9.3f} "
              f"{median(times[mode]) / len(images):8.2f}")


if __name__ == "__main__":
    main()
