"""Zoo families trained from scratch on full Fashion-MNIST by `cvzoo train`: epochs, wall time, test top-1.

Each row is one recipe (model, input size, optimiser, epochs) run through the public API on Debian's
dataset-fashion-mnist (60k train / 10k test) on the CPU; the figure is the test top-1 after the last
epoch (the issue's bar: above 85% for MobileNet v2, ResNet-18, ConvNeXt-T and a ViT-Tiny-sized model).
Rows run one after another in this process; wall time is the trainer's (data load to last checkpoint).

    .venv-bench/bin/python benchmarks/bench_fashion_mnist_zoo.py                        # all rows
    .venv-bench/bin/python benchmarks/bench_fashion_mnist_zoo.py --rows resnet18 vit_tiny --data /path/to/fashion-mnist
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import peak_rss_mib  # noqa: E402

import cvzoo  # noqa: E402

_SGD = ["optim.name=sgd", "optim.lr=0.1", "optim.momentum=0.9", "optim.weight_decay=0.0005",
        "scheduler.name=onecycle", "scheduler.pct_start=0.25", "train.label_smoothing=0.1"]
_ADAMW = ["optim.name=adamw", "optim.lr=0.001", "optim.weight_decay=0.05", "scheduler.name=cosine",
          "scheduler.warmup_epochs=0.3", "train.label_smoothing=0.1"]

# name -> (model, epochs, overrides). ImageNet-layout models keep their strides: 28 px reaches 1x1 at
# stride 32 (MobileNet v2, ResNet-18); ConvNeXt's 4x4 stem and three 2x2 downsamplings need 32 px.
ROWS: dict[str, tuple[str, int, list[str]]] = {
    "mobilenet_v2": ("mobilenet_v2", 2, _SGD),
    "resnet18": ("resnet18", 2, _SGD),
    "convnext_tiny": ("convnext_tiny", 2, [*_ADAMW, "data.img_size=32", "optim.lr=0.002"]),
    # ViT-Ti widths (192-d, 12 blocks, 3 heads) on 7x7 patches of the 28 px image: 16 tokens. Measured
    # 2026-12-05: 81.65% after 3 epochs, 84.24% after 6 (1148 s), both short of 85%; hence 8 epochs.
    "vit_tiny": ("vit_tiny_patch4_32", 8,
                 [*_ADAMW, "model.kwargs={patch_size: 7, image_size: 28}", "train.clip_grad_norm=1.0"]),
}


def run_row(name: str, data: str, project: str, batch: int) -> dict:
    model, epochs, overrides = ROWS[name]
    start = time.perf_counter()
    result = cvzoo.train(
        model=model, data=data, epochs=epochs, batch=batch, device="cpu", project=project, name=name,
        overrides=[*overrides, "data.workers=0", "classify.augment.hflip=0.5", "classify.augment.padding=2",
                   "train.channels_last=true", "run.progress=false", "run.tensorboard=false"],
    )
    return {"row": name, "model": model, "epochs": epochs, "top1": result.metrics.get("metrics/top1"),
            "wall_s": round(time.perf_counter() - start, 1), "run": str(result.run_dir)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--project", default="")
    args = parser.parse_args()
    project = args.project or tempfile.mkdtemp(prefix="fmnist_zoo_")
    results = []
    for name in args.rows:
        row = run_row(name, args.data, project, args.batch)
        results.append(row)
        print(f"{row['row']:14s} {row['model']:20s} epochs {row['epochs']}  top-1 {row['top1']:.4f}  "
              f"wall {row['wall_s']:.0f} s", flush=True)
    print(f"peak RSS {peak_rss_mib():.0f} MiB")
    print("RESULT " + json.dumps(results))


if __name__ == "__main__":
    main()
