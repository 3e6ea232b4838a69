"""Which detector? Every family trained from scratch on the same synthetic scenes, side by side (issue #16).

One command trains each model with ``cvzoo.api.train`` (its own registered recipe and augmentation, only the
epochs, image size and seed set here) on the same generated scenes (``cvzoo.data.synthetic``: Fashion-MNIST
objects on textures, exact boxes; 1000 training and 500 validation scenes by default), then reports

- mAP50-95 and mAP50 of the last epoch on the validation scenes (COCO evaluation, as ``cvzoo val``);
- training images/s: the epochs without validation (validation runs only after the last one), the first
  left out as warm-up when there are three or more;
- batch-1 CPU latency of ``cvzoo predict``'s one-image path (the model's own resize or letterbox, forward,
  post-processing, boxes back to the image) on a validation scene, median of ``--repeats`` after warm-up;
- parameters.

No target: it is the table a user needs to choose a detector. Run from the repository root:

    .venv/bin/python benchmarks/bench_detector_table.py                        # the issue's table (hours on a CPU)
    .venv/bin/python benchmarks/bench_detector_table.py --quick                # 40/20 scenes, 2 epochs: a smoke run
    .venv/bin/python benchmarks/bench_detector_table.py --models yolov8n fcos_resnet50_fpn --epochs 30

Results go to ``--out`` (``runs/detector_table``): one run folder per model and ``table.md`` / ``table.csv``.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

DEFAULT_MODELS = ("yolov8n", "ssdlite320_mobilenet_v3_large", "retinanet_resnet50_fpn", "fcos_resnet50_fpn",
                  "cornernet", "fasterrcnn_mobilenet_v3_large_320_fpn")
COLUMNS = ("model", "mAP50-95", "mAP50", "train img/s", "latency ms", "params (M)", "epochs", "imgsz", "batch")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    parser.add_argument("--train", type=int, default=1000, help="training scenes")
    parser.add_argument("--val", type=int, default=500, help="validation scenes")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--imgsz", type=int, default=320, help="scene side and every model's input size")
    parser.add_argument("--batch", type=int, help="batch size for every model (default: each recipe's own)")
    parser.add_argument("--repeats", type=int, default=20, help="timed batch-1 predictions per model")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/detector_table")
    parser.add_argument("--quick", action="store_true", help="40 training / 20 validation scenes, 2 epochs, 128 px")
    args = parser.parse_args(argv)
    if args.quick:
        args.train, args.val, args.epochs, args.imgsz, args.repeats = 40, 20, 2, 128, 3
    return args


def make_scenes(root: Path, n_train: int, n_val: int, imgsz: int, seed: int) -> Path:
    """The generated scenes as a YOLO dataset (written once per size and count, then reused)."""
    from cvzoo.data import synthetic

    folder = root / f"scenes_{n_train}_{n_val}_{imgsz}_s{seed}"
    if not (folder / "data.yaml").exists():
        synthetic.write_yolo_dataset(folder, n_train, n_val, config=synthetic.SceneConfig(image_size=(imgsz, imgsz)),
                                     seed=seed)
    return folder / "data.yaml"


def training_images_per_second(history: list[dict[str, float]], n_train: int) -> float:
    """Images/s over the epochs before the last (the last one also validates); the first is a warm-up when
    at least two others remain."""
    epochs = [row["time"] for row in history[:-1]] or [history[-1]["time"]]
    if len(epochs) >= 3:
        epochs = epochs[1:]
    return n_train * len(epochs) / sum(epochs)


def predict_latency_ms(checkpoint: Path, image: np.ndarray, repeats: int) -> float:
    """Median wall time of the one-image path of ``cvzoo predict`` (after two warm-up calls)."""
    from cvzoo.api import load_trained

    task, model, _ = load_trained(checkpoint, "cpu")
    settings = (None, None, None, None, False)  # the model's own conf / iou / max_det, all classes, hard NMS
    times = []
    with torch.inference_mode():
        for i in range(repeats + 2):
            start = time.perf_counter()
            task._predict_array(model, image, torch.device("cpu"), settings)
            if i >= 2:
                times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)


def run_one(name: str, data: Path, args: argparse.Namespace) -> dict[str, object]:
    from cvzoo.api import train

    overrides = [f"run.project={Path(args.out).resolve()}", f"run.name={name}", "run.exist_ok=true",
                 f"train.val_interval={args.epochs}", "data.workers=0", "run.progress=false"]
    if args.batch is not None:
        overrides.append(f"data.batch_size={args.batch}")
    result = train(overrides=overrides, task="detect", model=name, data=str(data), epochs=args.epochs,
                   imgsz=args.imgsz, seed=args.seed)
    from PIL import Image

    val_image = sorted((data.parent / "images" / "val").iterdir())[0]
    image = np.asarray(Image.open(val_image).convert("RGB"))
    from cvzoo.api import load_trained

    _, model, checkpoint = load_trained(result.last_checkpoint, "cpu")
    metrics = result.history[-1]
    return {
        "model": name,
        "mAP50-95": metrics.get("metrics/mAP50-95", float("nan")),
        "mAP50": metrics.get("metrics/mAP50", float("nan")),
        "train img/s": training_images_per_second(result.history, args.train),
        "latency ms": predict_latency_ms(result.last_checkpoint, image, args.repeats),
        "params (M)": sum(p.numel() for p in model.parameters()) / 1e6,
        "epochs": result.epochs_run,
        "imgsz": args.imgsz,
        "batch": checkpoint["config"]["data"]["batch_size"],
    }


def format_row(row: dict[str, object]) -> list[str]:
    out = []
    for column in COLUMNS:
        value = row[column]
        if isinstance(value, float):
            value = f"{value:.3f}" if column.startswith("mAP") else f"{value:.1f}" if "ms" in column or "/s" in column \
                else f"{value:.2f}"
        out.append(str(value))
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = make_scenes(out, args.train, args.val, args.imgsz, args.seed)
    print(f"{len(args.models)} models, {args.train} training / {args.val} validation scenes at {args.imgsz} px, "
          f"{args.epochs} epochs each, {args.threads} threads, data {data}", flush=True)
    rows = []
    for name in args.models:
        started = time.time()
        rows.append(run_one(name, data, args))
        print(f"{name}: done in {time.time() - started:.0f} s: {format_row(rows[-1])}", flush=True)
    table = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    table += ["| " + " | ".join(format_row(row)) + " |" for row in rows]
    (out / "table.md").write_text("\n".join(table) + "\n")
    with open(out / "table.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    print("\n".join(table))
    print(f"written: {out / 'table.md'}, {out / 'table.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
