"""Whole `cvzoo train` against a reference's whole training command, each at its own defaults (issue #22).

    .venv-bench/bin/python benchmarks/bench_train_defaults.py --task detect [--epochs 10] [--imgsz 320] [--batch 16]
    .venv-bench/bin/python benchmarks/bench_train_defaults.py --task detect --data nuclei      # after make bench-data
    .venv-bench/bin/python benchmarks/bench_train_defaults.py --task classify --timm-train PATH/train.py
    .venv-bench/bin/python benchmarks/bench_train_defaults.py --task ... --quick     # checks that it runs

Each command runs as a user runs it, in its own subprocess, timed from launch to exit: data, epochs, image
size and batch given, everything else at the library's defaults (worker count, threads, caching, AMP,
augmentation, optimizer and schedule, validation every epoch, plots, the final validation).

``--task detect``: ``cvzoo train --model yolov8n`` against ultralytics' ``YOLO("yolov8n.yaml").train``
on the synthetic scenes (``cvzoo.data.synthetic.write_yolo_dataset``, ultralytics layout + data YAML).
ultralytics is AGPL: it lives in ``.venv-bench`` only (``make bench-env``), started from ``yolov8n.yaml``
(nothing downloaded) with ``YOLO_OFFLINE=1``; cvzoo runs from the same interpreter.

``--task detect --data nuclei``: the same two commands on real data, StarDist's 512 x 512 fluorescence image of
nuclei (BSD-3, ``make bench-data``) cut into ``--imgsz`` tiles with a box per nucleus (``cvzoo data from-labels``;
12 training and 4 validation tiles of 128 px, about 10 small objects each), written in ultralytics' layout.

``--task classify``: ``cvzoo train --model resnet18`` against timm's ``train.py --model resnet18`` on a
class-balanced subset of Fashion-MNIST (real product photos; ``make bench-data`` links them into
``data/fashion-mnist``) written once as an image folder (``train/<class>/*.png``, ``val/<class>/*.png``,
the layout both read; grey pictures stored as RGB so that both build the same 3-channel network). timm's
``train.py`` is not in timm's wheel or sdist: pass the file from timm's repository, at the version of the
installed timm, with ``--timm-train``. Besides data, model, epochs, image size and batch, timm is told
its device (``--device cpu`` where there is no GPU: its default is ``cuda``), the class count and that
the validation folder is ``val`` (its default split name is ``validation``).

Time to first step: wall seconds from the process start to the end of its first optimizer step, the
time a user waits before training starts. cvzoo records it itself (results.csv ``time/first_step``,
``cvzoo.engine.profile``); for the references it is when the line each prints after its first step
reaches this script (its clock, from the launch): ultralytics through an ``on_train_batch_end``
callback (its first batch steps: the warm-up's accumulation is 1), timm by its first ``Train: 0 [ 0/``
log line, which it writes after the step.

Printed per side: wall time, time to first step, the sum of the epoch times, the rest (start-up and the
end: final validation, plots, files), the median epoch and the final metric (mAP50-95 / top-1); then the
wall-time ratio cvzoo / reference with the issue's target. Epoch times are each side's own: results.csv
for cvzoo and ultralytics; for timm, which records none, the time between the first-step lines of
consecutive epochs (the last epoch ends at its closing ``*** Best metric`` line), validation included as
on the other sides. Rounds alternate the sides.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from statistics import median

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from _ultralytics import offline_variables, synthetic_scenes  # noqa: E402

# The first batch's end, printed by the ultralytics side; the benchmark times its arrival.
FIRST_STEP_MARK = "bench: first optimizer step done"

ULTRALYTICS = f"""
import sys
from ultralytics import YOLO
data, epochs, imgsz, batch, project = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
model = YOLO("yolov8n.yaml")
seen = []
def first_step(trainer):
    if not seen:
        seen.append(True)
        print({FIRST_STEP_MARK!r}, flush=True)
model.add_callback("on_train_batch_end", first_step)
model.train(data=data, epochs=epochs, imgsz=imgsz, batch=batch, project=project, name="ultralytics", exist_ok=True,
            pretrained=False)
"""

TIMM_FIRST_STEP = re.compile(r"^Train: 0 \[\s*0/")
TIMM_EPOCH_START = re.compile(r"^Train: (\d+) \[\s*0/")
TIMM_END = re.compile(r"^\*\*\* Best metric")

# Fashion-MNIST's labels 0-9 (Xiao et al. 2017); the folder names keep that order when sorted.
FASHION_CLASSES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
                   "ankle-boot")


@dataclass
class Launch:
    """One finished command: its wall time and every output line with the seconds since launch it arrived at."""

    wall: float
    lines: list[tuple[float, str]]

    def first_at(self, pattern: re.Pattern[str] | str) -> float | None:
        for at, line in self.lines:
            if pattern.search(line) if isinstance(pattern, re.Pattern) else pattern in line:
                return at
        return None


@dataclass
class Row:
    wall: float
    first_step: float | None
    epochs: list[float]
    metric: float


def launch(command: list[str], log: Path, env: dict[str, str]) -> Launch:
    """Run ``command`` to its end, its output (stderr included) line by line into ``log`` and the result."""
    lines: list[tuple[float, str]] = []
    started = time.perf_counter()
    with open(log, "w") as out, subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                                                 cwd=REPO, text=True, bufsize=1) as process:
        for line in process.stdout:
            lines.append((time.perf_counter() - started, line.rstrip("\n")))
            out.write(line)
        code = process.wait()
    wall = time.perf_counter() - started
    if code:
        sys.exit(f"{command[:4]} failed with exit code {code}; see {log}")
    return Launch(wall, lines)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path) as handle:
        return [{k.strip(): v.strip() for k, v in row.items()} for row in csv.DictReader(handle)]


def cvzoo_side(args: argparse.Namespace, env: dict[str, str], project: Path, task: str, model: str, data: Path,
               metric_column: str) -> Row:
    """``cvzoo train`` as a user types it (data, epochs, size and batch given; the rest at its defaults)."""
    done = launch([sys.executable, "-m", "cvzoo.cli.main", "train", "--task", task, "--model", model,
                   "--data", str(data), "--epochs", str(args.epochs), "--imgsz", str(args.imgsz), "--batch",
                   str(args.batch), "--project", str(project), "--name", "cvzoo", "--set", "run.exist_ok=true",
                   "--set", "run.progress=false"], project.with_suffix(".cvzoo.log"), env)
    return cvzoo_row(done, project / task / "cvzoo" / "results.csv", metric_column)


def cvzoo_row(done: Launch, results: Path, metric_column: str) -> Row:
    rows = read_csv(results)
    first = next((float(r["time/first_step"]) for r in rows if r.get("time/first_step")), None)
    return Row(done.wall, first, [float(r["time"]) for r in rows], float(rows[-1][metric_column]))


# --------------------------------------------------------------------------------------------- detect
def scenes(args: argparse.Namespace) -> Path:
    from cvzoo.data.synthetic import SceneConfig

    root = Path(args.workdir) / f"scenes_{args.train_images}_{args.val_images}_{args.imgsz}"
    config = SceneConfig(image_size=(args.imgsz, args.imgsz), seed=0)
    return synthetic_scenes(root, args.train_images, args.val_images, config)


def nuclei_tiles(args: argparse.Namespace) -> Path:
    """StarDist's real microscopy image cut into ``--imgsz`` tiles (``cvzoo data from-labels``: every object of
    its label image a box; every 4th tile in raster order to val), in ultralytics' layout, which both sides read.
    Written once under ``--workdir``."""
    images = Path(args.stardist)
    if not (images / "img2d.tif").is_file():
        sys.exit(f"{images / 'img2d.tif'} is missing: `make bench-data` unpacks StarDist's sample images there")
    root = Path(args.workdir) / f"nuclei_tiles_{args.imgsz}"
    if not (root / ".complete").exists():
        write_nuclei_tiles(images, root, args.imgsz)
    for split in ("train", "val"):
        setattr(args, f"{split}_images", len(list((root / "images" / split).iterdir())))
    return root / "data.yaml"


def write_nuclei_tiles(images: Path, root: Path, tile: int) -> None:
    import shutil

    from cvzoo.data.formats.coco import read_coco
    from cvzoo.data.formats.label_images import pair_label_images, write_label_image_dataset
    from cvzoo.data.formats.yolo import write_yolo

    shutil.rmtree(root, ignore_errors=True)
    coco = write_label_image_dataset(pair_label_images([str(images / "img2d.tif")], [str(images / "mask2d.tif")]),
                                     root / "coco", tile=tile, class_name="nucleus")
    for split in ("train", "val"):  # boxes only: both sides train detectors
        split_set = read_coco(str(coco / "annotations" / f"instances_{split}.json"), str(coco / "images" / split))
        write_yolo(split_set, str(root), split=split, segments=False)
    (root / ".complete").write_text("ok\n")


def detect_sides(args: argparse.Namespace, env: dict[str, str]) -> dict[str, Callable[[Path], Row]]:
    data = nuclei_tiles(args) if args.data == "nuclei" else scenes(args)
    common = [str(args.epochs), str(args.imgsz), str(args.batch)]

    def cvzoo(project: Path) -> Row:
        return cvzoo_side(args, env, project, "detect", "yolov8n", data, "metrics/mAP50-95")

    def ultralytics(project: Path) -> Row:
        done = launch([sys.executable, "-c", ULTRALYTICS, str(data), *common, str(project)],
                      project.with_suffix(".ultra.log"), env)
        rows = read_csv(project / "ultralytics" / "results.csv")
        cumulative = [float(r["time"]) for r in rows]  # ultralytics records the time since training began
        epochs = [b - a for a, b in zip([0.0, *cumulative], cumulative)]
        return Row(done.wall, done.first_at(FIRST_STEP_MARK), epochs, float(rows[-1]["metrics/mAP50-95(B)"]))

    return {"cvzoo": cvzoo, "ultralytics": ultralytics}


# ------------------------------------------------------------------------------------------- classify
def fashion_folder(args: argparse.Namespace) -> Path:
    """A class-balanced subset of Fashion-MNIST as an image folder under ``--workdir`` (written once)."""
    from PIL import Image

    from cvzoo.data.formats.idx import load_idx_split

    root = Path(args.workdir) / f"fashion_folder_{args.train_images}_{args.val_images}"
    if (root / ".complete").exists():
        return root
    for split, source_split, count in (("train", "train", args.train_images), ("val", "val", args.val_images)):
        images, labels = load_idx_split(args.fashion_mnist, source_split)
        per_class = count // len(FASHION_CLASSES)
        for label, name in enumerate(FASHION_CLASSES):
            folder = root / split / f"{label}_{name}"
            folder.mkdir(parents=True, exist_ok=True)
            for index in (labels == label).nonzero()[0][:per_class]:
                Image.fromarray(images[index]).convert("RGB").save(folder / f"{index:05d}.png")
    (root / ".complete").write_text("ok\n")
    return root


def classify_sides(args: argparse.Namespace, env: dict[str, str]) -> dict[str, Callable[[Path], Row]]:
    if not args.timm_train or not Path(args.timm_train).is_file():
        sys.exit("--task classify runs timm's train.py, which timm's wheel and sdist do not ship: pass the train.py "
                 "of timm's repository, at the version of the installed timm, as --timm-train PATH/train.py")
    data = fashion_folder(args)

    def cvzoo(project: Path) -> Row:
        return cvzoo_side(args, env, project, "classify", "resnet18", data, "metrics/top1")

    def timm(project: Path) -> Row:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
        done = launch([sys.executable, args.timm_train, "--data-dir", str(data), "--val-split", "val", "--model",
                       "resnet18", "--num-classes", str(len(FASHION_CLASSES)), "--img-size", str(args.imgsz), "-b",
                       str(args.batch), "--epochs", str(args.epochs), "--device", device, "--output", str(project),
                       "--experiment", "timm"], project.with_suffix(".timm.log"), {**env, "PYTHONUNBUFFERED": "1"})
        starts: dict[int, float] = {}
        for at, line in done.lines:
            match = TIMM_EPOCH_START.search(line)
            if match:
                starts.setdefault(int(match.group(1)), at)
        marks = [starts[e] for e in sorted(starts)] + [done.first_at(TIMM_END) or done.lines[-1][0]]
        rows = read_csv(project / "timm" / "summary.csv")
        epochs = [b - a for a, b in zip(marks, marks[1:])]
        return Row(done.wall, done.first_at(TIMM_FIRST_STEP), epochs, float(rows[-1]["eval_top1"]) / 100)

    return {"cvzoo": cvzoo, "timm": timm}


# ----------------------------------------------------------------------------------------------- main
TASKS = {
    # task: (sides, metric name, target of the wall-time ratio, defaults: epochs, imgsz, batch, train, val)
    "detect": (detect_sides, "mAP50-95", 0.7, (10, 320, 16, 256, 64)),
    "classify": (classify_sides, "top-1", 0.8, (3, 64, 64, 4000, 1000)),
}
QUICK = {"detect": (2, 160, 16, 32, 8), "classify": (1, 32, 32, 200, 50)}
NUCLEI = (30, 128, 4, None, None)  # the tile counts follow from the image (512 x 512: 12 train, 4 val at 128 px)


def report(title: str, results: dict[str, list[Row]], metric: str, target: float) -> None:
    print(title)
    print(f"{'side':<12} {'wall s':>8} {'1st step s':>10} {'epochs s':>9} {'other s':>8} {'epoch s':>8} {metric:>9}")
    walls = {}
    for side, rows in results.items():
        wall = median(r.wall for r in rows)
        epochs = median(sum(r.epochs) for r in rows)
        firsts = [r.first_step for r in rows if r.first_step is not None]
        first = f"{median(firsts):10.2f}" if firsts else f"{'n/a':>10}"
        walls[side] = wall
        print(f"{side:<12} {wall:8.1f} {first} {epochs:9.1f} {wall - epochs:8.1f} "
              f"{median(t for r in rows for t in r.epochs):8.2f} {median(r.metric for r in rows):9.4f}")
    cvzoo, reference = list(walls)
    print(f"wall-time ratio cvzoo / {reference}: {walls[cvzoo] / walls[reference]:.3f} (target <= {target})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=sorted(TASKS), default="detect")
    parser.add_argument("--epochs", type=int, help="default: detect 10, classify 3")
    parser.add_argument("--imgsz", type=int, help="default: detect 320, classify 64")
    parser.add_argument("--batch", type=int, help="default: detect 16, classify 64")
    parser.add_argument("--train-images", type=int, help="default: detect 256 scenes, classify 4000 photos")
    parser.add_argument("--val-images", type=int, help="default: detect 64, classify 1000")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--data", choices=("scenes", "nuclei"), default="scenes",
                        help="detect: synthetic scenes, or StarDist's real nuclei image cut into --imgsz tiles (then "
                             "default: 30 epochs, 128 px, batch 4)")
    parser.add_argument("--stardist", default=str(REPO / "data" / "stardist" / "wheel" / "stardist" / "data" / "images"),
                        help="--data nuclei: the folder of img2d.tif / mask2d.tif (make bench-data)")
    parser.add_argument("--timm-train", help="timm's train.py (from timm's repository; --task classify)")
    parser.add_argument("--fashion-mnist", default=str(REPO / "data" / "fashion-mnist"),
                        help="Fashion-MNIST's idx files (make bench-data)")
    parser.add_argument("--workdir", default=str(REPO / "runs" / "bench_train_defaults"))
    parser.add_argument("--quick", action="store_true",
                        help="detect: 2 epochs on 32 + 8 scenes of 160 px; classify: 1 epoch on 200 + 50 photos at 32 px")
    args = parser.parse_args()
    make_sides, metric, target, defaults = TASKS[args.task]
    if args.data == "nuclei" and args.task != "detect":
        parser.error("--data nuclei is for --task detect")
    values = QUICK[args.task] if args.quick else NUCLEI if args.data == "nuclei" else defaults
    for key, value in zip(("epochs", "imgsz", "batch", "train_images", "val_images"), values):
        if args.quick or getattr(args, key) is None:
            setattr(args, key, value)
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **offline_variables(work)}
    sides = make_sides(args, env)
    results: dict[str, list[Row]] = {side: [] for side in sides}
    for round_index in range(args.rounds):
        project = work / f"{args.task}{'_nuclei' if args.data == 'nuclei' else ''}_round{round_index}"
        order = list(sides) if round_index % 2 == 0 else list(reversed(sides))
        for side in order:
            results[side].append(sides[side](project))
    model = "yolov8n" if args.task == "detect" else "resnet18"
    kind = {"classify": "Fashion-MNIST photos", "detect": "StarDist nuclei tiles" if args.data == "nuclei" else
            "scenes"}[args.task]
    report(f"{model} from scratch, {args.train_images} train / {args.val_images} val {kind}, {args.epochs} epochs, "
           f"{args.imgsz} px, batch {args.batch}, each side at its defaults, {os.cpu_count()} cores, "
           f"{args.rounds} round(s)", results, metric, target)


if __name__ == "__main__":
    main()
