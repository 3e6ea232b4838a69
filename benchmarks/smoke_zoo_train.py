"""One `cvzoo train` epoch per classification family on the bundled Fashion-MNIST sample (a smoke run).

For the smallest member of every family the script runs the real CLI in a subprocess::

    cvzoo train --model M --data fashion_mnist_sample --epochs 1 --imgsz S --batch 32 --device cpu \
        --lr 0.01 --set scheduler.warmup_epochs=0.3      # CNNs (SGD); ViT/Swin/ConvNeXt/MobileViT: AdamW 1e-3

(1,000 training images, 200 validation images; ``S`` is the smallest input the family's strides allow),
and prints a Markdown table: family, model, input size, exit status, train loss, val top-1, wall time.
A failing family shows its exit status and the last line of its output. This is a check that every
family trains end to end from the command line, not an accuracy benchmark (one epoch on 1k images).

    .venv-bench/bin/python benchmarks/smoke_zoo_train.py                 # all families
    .venv-bench/bin/python benchmarks/smoke_zoo_train.py --only vit swin
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# family -> (smallest registered member, input side). 32 px reaches 1x1 at stride 32; AlexNet's
# 11x11/4 stem and three max-pools need >= 63 px; the Swin/ViT-B patch grids need 224/7 and 16 multiples.
FAMILIES: dict[str, tuple[str, int]] = {
    "lenet": ("lenet_mnist", 28),
    "alexnet": ("alexnet_half", 64),
    "vgg": ("vgg11_bn", 32),
    "resnet": ("resnet18", 32),
    "resnext": ("resnext50_32x4d", 32),
    "cifar_resnet": ("resnet20_cifar", 28),
    "resnet9": ("resnet9_s", 28),
    "attention_resnet": ("se_resnet18", 32),
    "googlenet": ("googlenet", 32),
    "mobilenet_v1": ("mobilenet_v1_025", 32),
    "mobilenet_v2": ("mobilenet_v2_050", 32),
    "mobilenet_v3": ("mobilenet_v3_small", 32),
    "shufflenet_v1": ("shufflenet_v1_g3_x0_5", 32),
    "shufflenet_v2": ("shufflenet_v2_x0_5", 32),
    "efficientnet": ("efficientnet_b0", 32),
    "efficientnet_v2": ("efficientnet_v2_s", 32),
    "densenet": ("densenet121", 32),
    "repvgg": ("repvgg_a0", 32),
    "vit": ("vit_tiny_patch4_32", 32),
    "swin": ("swin_t", 32),
    "convnext": ("convnext_tiny", 32),
    "mobilevit": ("mobilevit_xxs", 32),
    "darknet": ("darknet53", 32),
}


# Transformer-style families train with AdamW; the CNNs with SGD at lr 0.01 and a short warm-up (the
# default 0.05 at batch 32 sent VGG11-BN to a NaN loss within the first 13 batches, which the trainer
# stops with a clear error, and left ResNeXt/DarkNet losses above 20).
ADAMW = ("vit", "swin", "convnext", "mobilevit")
SGD = ["--lr", "0.01", "--set", "scheduler.warmup_epochs=0.3"]


def run_family(family: str, model: str, size: int, project: str) -> dict:
    optimizer = ["--set", "optim.name=adamw", "--lr", "0.001", "--set", "optim.weight_decay=0.05"]
    command = [
        sys.executable, "-m", "cvzoo", "train", "--model", model, "--data", "fashion_mnist_sample", "--epochs", "1",
        "--imgsz", str(size), "--batch", "32", "--device", "cpu", "--project", project, "--name", family,
        "--set", "run.progress=false", "--set", "run.tensorboard=false", "--set", "run.plots=false",
        "--set", "data.workers=0", *(optimizer if family in ADAMW else SGD),
    ]
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True)
    row = {"family": family, "model": model, "size": size, "exit": proc.returncode,
           "seconds": time.perf_counter() - start, "loss": "", "top1": "", "note": ""}
    results = Path(project) / "classify" / family / "results.csv"
    if proc.returncode == 0 and results.exists():
        with results.open() as handle:
            last = list(csv.DictReader(handle))[-1]
        row["loss"], row["top1"] = float(last["train/loss"]), float(last["metrics/top1"])
    else:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        row["note"] = lines[-1][:120] if lines else ""
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=list(FAMILIES), default=list(FAMILIES))
    args = parser.parse_args()
    project = tempfile.mkdtemp(prefix="zoo_smoke_")
    print("| family | model | input | exit | train loss | val top-1 | wall s |")
    print("|---|---|---|---|---|---|---|")
    failures = 0
    for family in args.only:
        model, size = FAMILIES[family]
        row = run_family(family, model, size, project)
        failures += row["exit"] != 0
        loss = f"{row['loss']:.3f}" if row["loss"] != "" else row["note"]
        top1 = f"{row['top1']:.3f}" if row["top1"] != "" else "-"
        print(f"| {family} | `{model}` | {size} | {row['exit']} | {loss} | {top1} | {row['seconds']:.0f} |",
              flush=True)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
