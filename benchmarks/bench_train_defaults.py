"""Whole `cvzoo train` against whole `yolo train`, each at its own defaults (issue #22's figure).

    .venv-bench/bin/python benchmarks/bench_train_defaults.py [--epochs 10] [--imgsz 320] [--batch 16]
    .venv-bench/bin/python benchmarks/bench_train_defaults.py --quick     # checks that it runs

Both commands run as a user runs them, in their own subprocess, timed from start to exit: data,
epochs, image size and batch given, everything else at the library's defaults (worker count, threads,
caching, AMP, validation every epoch, plots, the final validation). The data is the synthetic
scenes (``cvzoo.data.synthetic.write_yolo_dataset``, ultralytics layout + data YAML), written once under
``--workdir``. ultralytics is AGPL: it lives in ``.venv-bench`` only (``make bench-env``), started from
``yolov8n.yaml`` (nothing downloaded) with ``YOLO_OFFLINE=1``; cvzoo runs from the same interpreter.

Printed per side: wall time, the sum of the epoch times its results.csv records, the rest (start-up and
the end: final validation, plots, files), the median epoch and the final mAP50-95; then the wall-time
ratio cvzoo / ultralytics (target <= 0.7 with mAP50-95 no lower). Rounds alternate the sides.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import time
from pathlib import Path
from statistics import median

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from _ultralytics import offline_variables, synthetic_scenes  # noqa: E402

ULTRALYTICS = """
import sys
from ultralytics import YOLO
data, epochs, imgsz, batch, project = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
YOLO("yolov8n.yaml").train(data=data, epochs=epochs, imgsz=imgsz, batch=batch, project=project, name="ultralytics",
                           exist_ok=True, pretrained=False)
"""


def dataset(args: argparse.Namespace) -> Path:
    from cvzoo.data.synthetic import SceneConfig

    root = Path(args.workdir) / f"scenes_{args.train_images}_{args.val_images}_{args.imgsz}"
    config = SceneConfig(image_size=(args.imgsz, args.imgsz), seed=0)
    return synthetic_scenes(root, args.train_images, args.val_images, config)


def run(command: list[str], log: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    with open(log, "w") as out:
        code = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO).returncode
    wall = time.perf_counter() - started
    if code:
        sys.exit(f"{command[:4]} failed with exit code {code}; see {log}")
    return wall


def read_results(path: Path, time_column: str, map_column: str, cumulative: bool) -> tuple[list[float], float]:
    with open(path) as handle:
        rows = [{k.strip(): v for k, v in row.items()} for row in csv.DictReader(handle)]
    times = [float(row[time_column]) for row in rows]
    if cumulative:  # ultralytics records the time since the start of training
        times = [b - a for a, b in zip([0.0, *times], times)]
    return times, float(rows[-1][map_column])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--train-images", type=int, default=256)
    parser.add_argument("--val-images", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--workdir", default=str(REPO / "runs" / "bench_train_defaults"))
    parser.add_argument("--quick", action="store_true", help="2 epochs on 32 + 8 scenes of 160 px")
    args = parser.parse_args()
    if args.quick:
        args.epochs, args.imgsz, args.train_images, args.val_images = 2, 160, 32, 8
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    data = dataset(args)
    env = {**os.environ, **offline_variables(work)}
    common = [str(data), str(args.epochs), str(args.imgsz), str(args.batch)]
    results: dict[str, list[tuple[float, list[float], float]]] = {"cvzoo": [], "ultralytics": []}
    for round_index in range(args.rounds):
        project = work / f"round{round_index}"
        wall = run([sys.executable, "-m", "cvzoo.cli.main", "train", "--task", "detect", "--model", "yolov8n",
                    "--data", str(data), "--epochs", str(args.epochs), "--imgsz", str(args.imgsz), "--batch",
                    str(args.batch), "--project", str(project), "--name", "cvzoo", "--set", "run.exist_ok=true",
                    "--set", "run.progress=false"], project.with_suffix(".cvzoo.log"), env)
        times, map50_95 = read_results(project / "detect" / "cvzoo" / "results.csv", "time", "metrics/mAP50-95",
                                       cumulative=False)
        results["cvzoo"].append((wall, times, map50_95))
        wall = run([sys.executable, "-c", ULTRALYTICS, *common, str(project)], project.with_suffix(".ultra.log"), env)
        times, map50_95 = read_results(project / "ultralytics" / "results.csv", "time", "metrics/mAP50-95(B)",
                                       cumulative=True)
        results["ultralytics"].append((wall, times, map50_95))
    print(f"yolov8n from scratch, {args.train_images} train / {args.val_images} val scenes, {args.epochs} epochs, "
          f"{args.imgsz} px, batch {args.batch}, each side at its defaults, {os.cpu_count()} cores")
    print(f"{'side':<12} {'wall s':>8} {'epochs s':>9} {'other s':>8} {'epoch s':>8} {'mAP50-95':>9}")
    walls = {}
    for side, runs in results.items():
        wall = median(r[0] for r in runs)
        epochs = median(sum(r[1]) for r in runs)
        walls[side] = wall
        print(f"{side:<12} {wall:8.1f} {epochs:9.1f} {wall - epochs:8.1f} {median(t for r in runs for t in r[1]):8.2f} "
              f"{median(r[2] for r in runs):9.4f}")
    print(f"wall-time ratio cvzoo / ultralytics: {walls['cvzoo'] / walls['ultralytics']:.3f} (target <= 0.7)")


if __name__ == "__main__":
    main()
