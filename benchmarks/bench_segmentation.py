"""Segmentation benchmarks: cvzoo beside torchvision (latency, training) and U-Net on synthetic scenes.

(a) ``latency``: batch-1 CPU inference at 512x512 of fcn_resnet50, deeplabv3_resnet50 and
    lraspp_mobilenet_v3_large beside torchvision's same model carrying the same weights (no aux heads),
    eval mode under ``torch.inference_mode``, ``torch.set_num_threads(--threads)``, calls alternating
    A B A B after a warm-up; the figure is the median of the per-pair ratios (target <= 1.05).
(b) ``train``: cvzoo deeplabv3_resnet50 and torchvision's, both from the same random init (torchvision's,
    loaded into cvzoo), trained by one identical plain loop (SGD + momentum, poly lr, CE + 0.5 aux, same
    batches in the same order) on a synthetic VOC-style set; epochs alternate A B, B A, ... Reports both
    final mIoUs and the median per-epoch time ratio.
(c) ``unet``: ``cvzoo train --task segment --model unet`` on synthetic scenes for a fixed number of
    epochs; reports the validation mIoU and mean Dice.
(d) ``profile``: the operators of one training step (forward + backward, batch 8 at 96 px, aux head) of
    each deeplabv3_resnet50 under ``torch.profiler``, three steps each: per-operator call counts and self
    CPU times side by side, the largest differences first. Shows whether a throughput difference in (b)
    comes from different work or from timing noise.

    .venv-bench/bin/python benchmarks/bench_segmentation.py latency
    .venv-bench/bin/python benchmarks/bench_segmentation.py train --quick
    .venv-bench/bin/python benchmarks/bench_segmentation.py unet --quick
    .venv-bench/bin/python benchmarks/bench_segmentation.py profile
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import median, median_ratio, operator_self_times, peak_rss_mib, print_operator_comparison  # noqa: E402

from cvzoo.models import create_model  # noqa: E402
from cvzoo.models.weights import load_weights  # noqa: E402

LATENCY_MODELS = ("fcn_resnet50", "deeplabv3_resnet50", "lraspp_mobilenet_v3_large")


def _pair(name: str, num_classes: int, aux: bool) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(cvzoo model, torchvision model) with identical weights."""
    from torchvision.models import segmentation as tvseg

    torch.manual_seed(0)
    kwargs = {} if name.startswith("lraspp") else {"aux_loss": aux}
    reference = getattr(tvseg, name)(weights=None, weights_backbone=None, num_classes=num_classes, **kwargs)
    ours = create_model(name, num_classes=num_classes, **({} if name.startswith("lraspp") else {"aux_head": aux}))
    load_weights(ours, reference.state_dict(), strict=True)
    return ours, reference


# ------------------------------------------------------------------------------------------ (a) latency
@torch.inference_mode()
def bench_latency(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    x = torch.randn(1, 3, args.size, args.size)
    print(f"batch-1 CPU latency at {args.size}x{args.size}, {args.threads} threads, {args.repeats} pairs")
    print(f"{'model':28s} {'cvzoo ms':>9s} {'tv ms':>9s} {'ratio':>6s} {'max |diff|':>10s}")
    for name in args.models:
        try:
            ours, reference = _pair(name, 21, aux=False)
        except Exception as err:  # report a model that cannot be built and go on with the others
            print(f"{name:28s} unavailable: {type(err).__name__}: {err}")
            continue
        ours.eval(), reference.eval()
        diff = float((ours(x)["out"] - reference(x)["out"]).abs().max())
        for _ in range(args.warmup):
            ours(x), reference(x)
        times: dict[str, list[float]] = {"cvzoo": [], "tv": []}
        for _ in range(args.repeats):
            for key, model in (("cvzoo", ours), ("tv", reference)):
                start = time.perf_counter()
                model(x)
                times[key].append(time.perf_counter() - start)
        ratio = median_ratio(times["cvzoo"], times["tv"])
        print(f"{name:28s} {1e3 * median(times['cvzoo']):9.1f} {1e3 * median(times['tv']):9.1f} {ratio:6.3f} "
              f"{diff:10.2e}")
    print(f"peak RSS {peak_rss_mib():.0f} MiB")


# ------------------------------------------------------------------------------------ (b) training loop
def _scenes(root: Path, n_train: int, n_val: int, size: int, seed: int = 0) -> Path:
    from cvzoo.data.synthetic import SceneConfig, write_voc_segmentation

    config = SceneConfig(image_size=(size, size), objects_per_image=(1, 4), scale_range=(0.25, 0.6),
                         classes=("trouser", "bag", "sneaker"))
    return write_voc_segmentation(root, n_train, n_val, config, seed=seed)


def _tensors(root: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    from cvzoo.data.datasets.segmentation import (
        SegmentationDataset,
        SegmentationEvalTransform,
        load_segmentation_split,
    )

    dataset = SegmentationDataset(load_segmentation_split(str(root), split), SegmentationEvalTransform())
    images, masks = zip(*(dataset[i] for i in range(len(dataset))))
    return torch.stack(images), torch.stack(masks)


def _miou(model: torch.nn.Module, images: torch.Tensor, masks: torch.Tensor, num_classes: int) -> float:
    from cvzoo.metrics.segmentation import SegmentationMetrics

    metrics = SegmentationMetrics(num_classes)
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(images), 16):
            metrics.update(model(images[start:start + 16])["out"].argmax(1), masks[start:start + 16])
    return metrics.compute()["mIoU"]


def bench_train(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    n_train, n_val, size, epochs = (64, 16, 64, 3) if args.quick else (240, 60, 96, 4)
    epochs = args.epochs or epochs
    with tempfile.TemporaryDirectory() as tmp:
        root = _scenes(Path(tmp), n_train, n_val, size)
        train_x, train_y = _tensors(root, "train")
        val_x, val_y = _tensors(root, "val")
    num_classes, batch = 4, 8
    models = dict(zip(("cvzoo", "tv"), _pair("deeplabv3_resnet50", num_classes, aux=True)))
    optimizers = {k: torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4) for k, m in models.items()}
    steps = epochs * math.ceil(n_train / batch)
    schedulers = {k: torch.optim.lr_scheduler.LambdaLR(o, lambda t: (1 - t / steps) ** 0.9) for k, o in optimizers.items()}
    times: dict[str, list[float]] = {"cvzoo": [], "tv": []}
    print(f"deeplabv3_resnet50, {n_train} train / {n_val} val images of {size}px, {epochs} epochs, batch {batch}, "
          f"{args.threads} threads")
    for epoch in range(epochs):
        order = torch.randperm(n_train, generator=torch.Generator().manual_seed(epoch))
        # A B, B A, ...: each epoch of both models under the same load, neither always first.
        for key in (("cvzoo", "tv") if epoch % 2 == 0 else ("tv", "cvzoo")):
            model = models[key]
            model.train()
            start = time.perf_counter()
            for first in range(0, n_train - batch + 1, batch):  # drop the last partial batch (BatchNorm)
                idx = order[first:first + batch]
                torch.manual_seed(1000 * epoch + first)  # same dropout masks for both models
                outputs = model(train_x[idx])
                loss = F.cross_entropy(outputs["out"], train_y[idx], ignore_index=255) + 0.5 * F.cross_entropy(
                    outputs["aux"], train_y[idx], ignore_index=255)
                optimizers[key].zero_grad(set_to_none=True)
                loss.backward()
                optimizers[key].step()
                schedulers[key].step()
            times[key].append(time.perf_counter() - start)
            print(f"  epoch {epoch + 1} {key:5s} loss {float(loss.detach()):.4f}  {times[key][-1]:.1f}s")
    results = {key: _miou(model, val_x, val_y, num_classes) for key, model in models.items()}
    ratio = median_ratio(times["cvzoo"], times["tv"])
    print(f"val mIoU: cvzoo {results['cvzoo']:.4f}  torchvision {results['tv']:.4f}")
    print(f"epoch time ratio cvzoo/torchvision {ratio:.3f} (throughput ratio {1 / ratio:.3f}); "
          f"peak RSS {peak_rss_mib():.0f} MiB")


# ------------------------------------------------------------------------------------------- (c) U-Net
def bench_unet(args: argparse.Namespace) -> None:
    from cvzoo.cli.main import main

    torch.set_num_threads(args.threads)
    n_train, n_val, size, epochs, base = (120, 30, 64, 8, 8) if args.quick else (400, 100, 96, 20, 16)
    with tempfile.TemporaryDirectory() as tmp:
        root = _scenes(Path(tmp) / "data", n_train, n_val, size)
        start = time.perf_counter()
        code = main([
            "train", "--task", "segment", "--model", "unet", "--data", str(root), "--epochs", str(epochs),
            "--batch", "8", "--imgsz", str(size), "--lr", "0.005", "--optimizer", "adam", "--device", "cpu",
            "--project", str(Path(tmp) / "runs"), "--name", "unet", "--set", f"model.kwargs={{base_channels: {base}}}",
            "--set", "segment.augment.scale=[0.75, 1.33]", "--set", "optim.weight_decay=0",
            "--set", "run.progress=false", "--set", "run.tensorboard=false",
        ])
        elapsed = time.perf_counter() - start
        if code != 0:
            raise SystemExit(code)
        rows = (Path(tmp) / "runs" / "segment" / "unet" / "results.csv").read_text().splitlines()
        header, last = rows[0].split(","), rows[-1].split(",")
        row = dict(zip(header, last))
    print(f"U-Net base {base}, {n_train} train / {n_val} val scenes of {size}px (3 classes + background), "
          f"{epochs} epochs in {elapsed:.0f}s: val mIoU {float(row['metrics/mIoU']):.4f}, "
          f"mDice {float(row['metrics/mDice']):.4f}, pixel acc {float(row['metrics/pixel_acc']):.4f}")


# ------------------------------------------------------------------------------------ (d) operator profile
def bench_profile(args: argparse.Namespace) -> None:
    from torch.profiler import profile

    torch.set_num_threads(args.threads)
    models = dict(zip(("cvzoo", "tv"), _pair("deeplabv3_resnet50", 4, aux=True)))
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(8, 3, 96, 96, generator=generator)
    masks = torch.randint(0, 4, (8, 96, 96), generator=generator)

    def step(model: torch.nn.Module) -> None:
        outputs = model(images)
        loss = F.cross_entropy(outputs["out"], masks) + 0.5 * F.cross_entropy(outputs["aux"], masks)
        loss.backward()

    table: dict[str, dict[str, tuple[int, float]]] = {}
    for key, model in models.items():
        model.train()
        step(model)  # warm-up: allocator and oneDNN primitive caches
        with profile() as prof:
            for _ in range(3):
                step(model)
        table[key] = operator_self_times(prof)
    print_operator_comparison(table, f"deeplabv3_resnet50, 3 training steps (batch 8, 96 px, aux), {args.threads} threads",
                              rows=20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["latency", "train", "unet", "profile"])
    parser.add_argument("--models", nargs="+", default=list(LATENCY_MODELS), help="latency: models to compare")
    parser.add_argument("--size", type=int, default=512, help="latency: input side")
    parser.add_argument("--repeats", type=int, default=7, help="latency: A B pairs")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="train / unet: the short version")
    parser.add_argument("--epochs", type=int, help="train: epochs (default 4, --quick 3)")
    args = parser.parse_args()
    {"latency": bench_latency, "train": bench_train, "unet": bench_unet, "profile": bench_profile}[args.what](args)


if __name__ == "__main__":
    main()
