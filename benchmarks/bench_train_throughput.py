"""Training throughput of `cvzoo train`'s engine vs a bare PyTorch loop vs a timm-style loop.

Same model object type (cvzoo's), batch, input size, threads and in-memory data for all three; no
augmentation, no validation. Rounds alternate A B C after a warm-up; the figure is the median of the
per-round ratios. timm's train.py is a script of timm's repository, not part of the timm wheel, so the
timm side is a loop built from timm's own components (create_optimizer_v2, CosineLRScheduler with
per-update stepping, AverageMeter bookkeeping) doing the per-step work train.py does.

    .venv-bench/bin/python benchmarks/bench_train_throughput.py --model resnet18 --size 64 --channels 3
    .venv-bench/bin/python benchmarks/bench_train_throughput.py --model resnet20_cifar --size 32 --channels 1
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import alternate, median, median_ratio, peak_rss_mib  # noqa: E402

from cvzoo.config import Config, apply_overrides  # noqa: E402
from cvzoo.data.bundled import load_fashion_sample  # noqa: E402
from cvzoo.engine.trainer import Trainer  # noqa: E402
from cvzoo.models.registry import create_model  # noqa: E402
from cvzoo.tasks.classification import ClassificationTask  # noqa: E402


def make_data(size: int, channels: int, count: int) -> TensorDataset:
    images, labels, _ = load_fashion_sample("train")
    x = torch.from_numpy(images[:count]).float().div(255).unsqueeze(1)
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    x = ((x - 0.286) / 0.353).repeat(1, channels, 1, 1).contiguous()
    return TensorDataset(x, torch.from_numpy(labels[:count]))


class InMemoryTask(ClassificationTask):
    """The classification task on the benchmark's tensors (no transforms, no validation)."""

    def __init__(self, config: Config, data: TensorDataset, channels: int) -> None:
        super().__init__(config)
        self.data, self.channels = data, channels

    def build_datasets(self):
        self.classes = [str(i) for i in range(10)]
        self.model_channels = self.data_channels = self.channels
        return self.data, None


def cvzoo_engine(args: argparse.Namespace, data: TensorDataset, workdir: str) -> float:
    config = apply_overrides(Config(), [
        f"model.name={args.model}", f"data.batch_size={args.batch}", "data.workers=0",
        f"train.epochs={args.epochs}", "train.device=cpu", "optim.lr=0.01", f"run.project={workdir}",
        "run.progress=false", "run.tensorboard=false", "run.plots=false", "run.name=bench",
    ])
    torch.manual_seed(0)
    result = Trainer(config, InMemoryTask(config, data, args.channels)).fit()
    # Per-epoch wall time recorded by the trainer (excludes model build and checkpoint writing);
    # the first epoch is the warm-up.
    times = [row["time"] for row in result.history[1:]] or [result.history[0]["time"]]
    return len(data) / median(times)


def bare_loop(args: argparse.Namespace, data: TensorDataset) -> float:
    torch.manual_seed(0)
    model = create_model(args.model, num_classes=10, in_channels=args.channels).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    loader = DataLoader(data, batch_size=args.batch, shuffle=True)
    times = []
    for _ in range(args.epochs):
        start = time.perf_counter()
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        times.append(time.perf_counter() - start)
    return len(data) / median(times[1:] or times)


def timm_style_loop(args: argparse.Namespace, data: TensorDataset) -> float:
    from timm.optim import create_optimizer_v2
    from timm.scheduler import CosineLRScheduler
    from timm.utils import AverageMeter

    torch.manual_seed(0)
    model = create_model(args.model, num_classes=10, in_channels=args.channels).train()
    optimizer = create_optimizer_v2(model, "sgd", lr=0.01, momentum=0.9, weight_decay=5e-4)
    loader = DataLoader(data, batch_size=args.batch, shuffle=True)
    scheduler = CosineLRScheduler(optimizer, t_initial=args.epochs * len(loader), t_in_epochs=False)
    times, updates = [], 0
    for _ in range(args.epochs):
        losses, batch_time = AverageMeter(), AverageMeter()
        start = end = time.perf_counter()
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            updates += 1
            losses.update(loss.item(), x.size(0))
            scheduler.step_update(num_updates=updates)
            batch_time.update(time.perf_counter() - end)
            end = time.perf_counter()
        times.append(time.perf_counter() - start)
    return len(data) / median(times[1:] or times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=3, help="per measurement; the first is warm-up")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = make_data(args.size, args.channels, args.images)
    with tempfile.TemporaryDirectory() as workdir:
        results = alternate({
            "cvzoo": lambda: cvzoo_engine(args, data, workdir),
            "bare": lambda: bare_loop(args, data),
            "timm": lambda: timm_style_loop(args, data),
        }, repeats=args.repeats, warmup=0)
    print(f"{args.model} {args.size}px x{args.channels} batch {args.batch}, {args.images} images in memory, "
          f"{args.threads} threads, {args.repeats} alternating rounds")
    for name, values in results.items():
        print(f"  {name:6s} median {median(values):8.1f} img/s  (rounds: {', '.join(f'{v:.1f}' for v in values)})")
    print(f"  cvzoo / bare  = {median_ratio(results['cvzoo'], results['bare']):.3f}x (target >= 0.95)")
    print(f"  cvzoo / timm  = {median_ratio(results['cvzoo'], results['timm']):.3f}x (target >= 1.0)")
    print(f"  peak RSS of the process: {peak_rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
